"""Command line: a thin layer over the library. Errors are one line; results go to stdout."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import __version__
from .errors import EdgemakerError
from .progress import ConsoleProgress, Progress, SilentProgress


def _seed(_ctx, _param, value: int | None) -> int | None:
    """--seed's check: what numpy's and Python's generators take, else one line (not click's usage text)."""
    if value is not None and not 0 <= value < 2**32:
        raise EdgemakerError(f"invalid option: --seed must be within 0..{2**32 - 1} (got {value})")
    return value


def _progress(quiet: bool, as_json: bool) -> Progress:
    return SilentProgress() if quiet or as_json else ConsoleProgress()


def _emit(obj: dict, as_json: bool, text: str) -> None:
    click.echo(json.dumps(obj, indent=2) if as_json else text)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgemaker")
def cli() -> None:
    """Turn a folder of labelled images or sounds into a small, evaluated, int8 classifier for devices."""


def _engine_flags(fn):
    """--engine / --ray-address / --ray-actors: where validation and extraction run (features/engines.py)."""
    fn = click.option("--ray-actors", type=click.IntRange(min=1), default=None,
                      help="With --engine ray: embedding actors (default: the cluster's CPUs / 2).")(fn)
    fn = click.option("--ray-address", default=None, envvar="EDGEMAKER_RAY_ADDRESS",
                      help="With --engine ray: a running cluster (e.g. 10.0.0.5:6379, or auto); "
                           "default: a Ray instance for this run.")(fn)
    return click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                        help="Run validation and embedding extraction here, or on Ray (pip install 'edgemaker[ray]').")(fn)


def _engine_options(engine: str, ray_address: str | None, ray_actors: int | None):
    from .run_settings import engine_options

    try:
        return engine_options(engine, ray_address, ray_actors)
    except ValueError as exc:
        raise EdgemakerError(f"invalid option: {exc}") from None


def _threads(threads: int | None) -> int | None:
    """--threads as ClassifierOptions checks it, as the one-line error `train` gives."""
    from .tasks.options import ClassifierOptions

    try:
        ClassifierOptions(threads=threads)
    except ValueError as exc:
        raise EdgemakerError(f"invalid option: {exc}") from None
    return threads


def _engine(options):
    """The engine object for validate_folder (None: the local default); a missing Ray is said here."""
    if options.kind == "local":
        return None
    from .features.engines import engine_for

    return engine_for(options)


@cli.command()
@click.argument("data", required=False)
@click.option("--out", "out", type=click.Path(path_type=Path), default=None, help="Run folder to write.")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="A run's config.json: train that run again (same split, settings and formats).")
@click.option("--task", type=click.Choice(["image", "audio"]), default=None,
              help="Default: detected from the files (mixing images and sounds is an error).")
@click.option("--backbone", default=None,
              help="Feature extractor (see `edgemaker backbones`). Audio default: chosen by cross-validation.")
@click.option("--epochs", type=int, default=None, help="Most epochs (early stopping picks the best).")
@click.option("--batch-size", type=int, default=None)
@click.option("--learning-rate", type=float, default=None)
@click.option("--dropout", type=float, default=None)
@click.option("--label-smoothing", type=float, default=None)
@click.option("--class-weights", type=click.Choice(["auto", "balanced", "none"]), default=None,
              help="auto: balanced weights when classes are imbalanced.")
@click.option("--seed", type=int, callback=_seed, default=0, show_default=True,
              help="Seeds the split, augmentation and training.")
@click.option("--head", type=click.Choice(["auto", "softmax", "probe"]), default=None,
              help="The trained softmax head or a logistic-regression probe; auto (default): chosen by cross-validation.")
@click.option("--cv-folds", type=int, default=None,
              help="Folds of the cross-validation over train+val that chooses the head (default 5, or 3 from "
                   "1,000 samples; 0: choose on the validation split).")
@click.option("--flip-average", type=click.Choice(["off", "auto", "on"]), default=None,
              help="Images: average each image's and its mirror's probabilities inside the exported graph (twice "
                   "the inference); default off; auto: only where cross-validation says it wins (embeds every mirror once).")
@click.option("--cv-group-by", default=None, metavar="REGEX",
              help="Files whose names share this regex's first group stay in one fold, e.g. '^(\\d+-\\d+)' "
                   "for ESC-50 clips cut from one recording.")
@click.option("--augment/--no-augment", default=None,
              help="Train on flip/rotate/zoom views (sounds: gain/noise/shift) or on clean embeddings only. "
                   "Default: chosen by cross-validation.")
@click.option("--augment-views", type=int, default=None, help="Augmented copies per training sample (default 2).")
@click.option("--split", "split_text", default="80/10/10", show_default=True,
              help="train/val/test percentages for folders without their own split.")
@click.option("--formats", default="onnx-fp32,onnx-int8,tflite-int8", show_default=True,
              help="Comma-separated: onnx-fp32, onnx-int8, onnx-dynamic, onnx-fp16, tflite-fp32, tflite-int8, "
                   "tflite-dynamic, tflite-fp16, c-array, arduino (sounds also: onnx-fp32-nofrontend, onnx-int8-nofrontend).")
@click.option("--input-size", type=int, default=None,
              help="Images: run the backbone at this input size (e.g. 96, 128, 160) for small devices.")
@click.option("--width", type=int, default=None, help="small_cnn: channels of the first conv block (default 16).")
@click.option("--grayscale", type=click.Choice(["auto", "on", "off"]), default=None,
              help="small_cnn: one input channel (auto: when every training image is gray); "
                   "MobileNetV1 (on): its first convolution summed over RGB for a grey camera.")
@click.option("--base-model", type=click.Path(path_type=Path), default=None,
              help="Start from your own model (edgemaker model_fp32.onnx, any image-classification ONNX, or "
                   "TorchScript): its last --retrain-last layers are reset and retrained, the rest frozen.")
@click.option("--retrain-last", type=int, default=None, help="With --base-model: layers to reset and retrain (default 3).")
@click.option("--input-scaling", type=click.Choice(["0..1", "-1..1", "0..255", "imagenet"]), default=None,
              help="A --base-model without edgemaker metadata: how it expects pixels scaled (with --input-size).")
@click.option("--flip/--no-flip", default=True, show_default=True,
              help="Mirror training views (turn off for digits and text).")
@click.option("--fine-tune", "fine_tune", default=None, metavar="K|auto",
              help="Images: also train the backbone's last K blocks with the head (auto: K from 0-3 by validation); "
                   "with --max-flash/--max-ram as targets, the winning cut's last blocks.")
@click.option("--fine-tune-epochs", type=int, default=None, help="Most fine-tuning epochs per depth tried.")
@click.option("--max-flash", default=None, help="Device flash, e.g. 1M or 512K: without --backbone, the most accurate "
              "model that fits is searched (truncated backbones, input sizes, small_cnn); with one, a check.")
@click.option("--max-ram", default=None, help="Device RAM for the tensor arena, e.g. 256K (as --max-flash).")
@click.option("--device", default=None, metavar="NAME",
              help="A board's flash and RAM budgets (see `edgemaker devices`); --max-flash/--max-ram override them.")
@click.option("--auto", "auto", is_flag=True,
              help="Choose backbone, input size and head settings by validation accuracy within --budget "
                   "(with --max-flash/--max-ram: the most accurate candidate that fits).")
@click.option("--distill", "distill", is_flag=True,
              help="Train a small student (the --max-flash/--max-ram winner, --backbone, or small_cnn) on the full "
                   "model's probabilities; reports it beside its from-scratch twin and the teacher.")
@click.option("--strategy", default=None, metavar="NAME",
              help="A registered training strategy (head, auto, budget, or a plugin's); default: auto with --auto, "
                   "budget with --max-flash/--max-ram and no --backbone, else head.")
@click.option("--budget", default=None, help="With --auto: time for the whole run, e.g. 5m, 300s, 1h (default 10m).")
@click.option("--silence-db", type=float, default=-60.0, show_default=True,
              help="Audio: 10 ms frames quieter than this (dBFS) are removed before windowing.")
@click.option("--keep-silence", is_flag=True, help="Audio: do not remove quiet frames.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Where embeddings are cached.")
@click.option("--threads", type=int, default=None, help="Inference threads, and threads fitting cross-validation heads side by side (default: all cores).")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Print metrics.json to stdout.")
@_engine_flags
def train(**params) -> None:
    """Train on DATA (<class>/<files> or {train,val,test}/<class>/<files>; images or sounds) and
    export to --out. `--config RUN/config.json` trains that run again (DATA and --out may replace
    its folders)."""
    from .pipeline import train_run
    from .run_settings import config_from_settings

    settings = dict(params)
    config_file, quiet, as_json = settings.pop("config_file"), settings.pop("quiet"), settings.pop("as_json")
    data, out = settings.pop("data"), settings.pop("out")
    settings["split"] = settings.pop("split_text")
    if config_file is not None:
        config = _config_from_file(config_file, data, out)
    elif data is None or out is None:
        raise EdgemakerError("give DATA and --out (or --config RUN/config.json to train a run again)")
    else:
        try:
            config = config_from_settings(data, out, **settings)
        except ValueError as exc:
            raise EdgemakerError(f"invalid option: {exc}") from None
    out = Path(config.out)
    metrics = train_run(config, _progress(quiet, as_json))
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
        return
    if not quiet:
        noun = "images" if metrics["task"] == "image_classification" else "clips"
        lines = [f"auto: chose {metrics['auto']['winner']} of {len(metrics['auto']['candidates'])} tried "
                 f"({len(metrics['auto']['skipped'])} skipped)"] if metrics.get("auto") else []
        lines += [f"backbone {metrics['backbone']['name']}; test accuracy {metrics['test']['accuracy']:.4f} "
                 f"({metrics['splits']['test']} {noun}), total {metrics['timings']['total_s']:.1f} s"]
        for e in metrics["exports"]:
            ram = (f"  RAM {e['arena_bytes'] / 1e6:.2f} MB (TFLite Micro)" if e.get("arena_bytes") else
                   f"  RAM {e['peak_ram_bytes'] / 1e6:.2f} MB" if e.get("peak_ram_bytes") else "")
            lines.append(f"  {e['format']:<14} {e['size_bytes'] / 1e6:6.2f} MB  acc {e['test_accuracy']:.4f}  "
                         f"{e['latency_ms']:.1f} ms{ram}  {out / e['path']}")
        lines.append(f"report: {out / 'report.html'}")
        click.echo("\n".join(lines))


def _config_from_file(path: Path, data: str | None, out: Path | None):
    """The RunConfig saved in a run folder, with DATA/--out replacing its folders when given; any
    other training flag with --config is an error (the file is the whole request)."""
    from dataclasses import replace

    from .config import RunConfig

    ctx = click.get_current_context()
    fixed = {"data", "out", "config_file", "quiet", "as_json"}
    extra = [p.name for p in ctx.command.params if p.name not in fixed and
             ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE]
    if extra:
        raise EdgemakerError(f"--{extra[0].replace('_', '-')} with --config: the config file is the whole request; "
                             "edit a copy of it, or train without --config")
    config = RunConfig.load(path)
    if data is not None:
        config = replace(config, data=replace(config.data, folder=str(data)))
    return replace(config, out=str(out)) if out is not None else config


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("files", nargs=-1, required=True)  # paths or fsspec URLs (data/sources.py)
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--windows", is_flag=True, help="Sounds: also the top label of every window, with its start time.")
@click.option("--json", "as_json", is_flag=True)
def predict(model: Path, files: tuple[str, ...], top_k: int, windows: bool, as_json: bool) -> None:
    """Classify FILES (paths, or URLs such as s3://bucket/cat.jpg with that store's fsspec package) with
    an exported MODEL file (labels travel inside it). A sound's result is the mean over its windows,
    so long recordings work as they are."""
    from .data.sources import data_root, is_url
    from .export.runtime import load_exported

    m = load_exported(model)
    results, failed = [], 0

    def top(proba) -> list[dict]:
        order = proba.argsort()[::-1][:top_k]
        return [{"label": m.labels[i], "probability": round(float(proba[i]), 4)} for i in order]

    for name in files:
        try:
            path = data_root(name)  # a local Path, or a RemotePath (one line if its package is missing)
            if is_url(path) and not path.is_file():  # (a local path is checked where it is read)
                raise EdgemakerError(f"{name}: file not found; check the URL")
            result = {"file": name, "top": top(m.predict_files([path])[0])}
            if windows and m.modality == "audio":
                starts, proba = m.window_probabilities(path)
                result["windows"] = [{"start_s": round(float(t), 3), "label": m.labels[int(p.argmax())],
                                      "probability": round(float(p.max()), 4)} for t, p in zip(starts, proba)]
        except EdgemakerError as exc:
            failed += 1
            results.append({"file": name, "error": str(exc)})
            click.echo(f"error: {exc}", err=True)
            continue
        results.append(result)
    if as_json:
        click.echo(json.dumps({"model": str(model), "predictions": results}, indent=2))
    else:
        for r in results:
            if "top" in r:
                click.echo(f"{r['file']}: " + ", ".join(f"{t['label']} {t['probability']:.3f}" for t in r["top"]))
            for w in r.get("windows", []):
                click.echo(f"  {w['start_s']:8.2f}s  {w['label']} {w['probability']:.3f}")
    if failed:
        sys.exit(1)


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("folder")  # a folder or an fsspec URL (data/sources.py)
@click.option("--json", "as_json", is_flag=True)
@click.option("--quiet", is_flag=True)
@_engine_flags
def evaluate(model: Path, folder: Path, as_json: bool, quiet: bool, engine: str, ray_address, ray_actors) -> None:
    """Evaluate an exported MODEL on FOLDER (<class>/<files>; a test/ split is used if present)."""
    from .export.runtime import load_exported
    from .pipeline import evaluate_files
    from .data.validate import validate_folder

    progress = _progress(quiet, as_json)
    m = load_exported(model)
    report = validate_folder(folder, progress=progress, min_classes=1, modality=m.modality,
                             engine=_engine(_engine_options(engine, ray_address, ray_actors)))
    samples = report.samples
    if report.presplit and any(s.split == "test" for s in samples):
        samples = [s for s in samples if s.split == "test"]
    unknown = sorted({s.label for s in samples} - set(m.labels))
    if unknown:
        raise EdgemakerError(f"{folder}: class '{unknown[0]}' is not one of the model's labels "
                             f"({', '.join(m.labels)}); rename or remove that folder")
    ev = evaluate_files([m], [s.path for s in samples], [s.label for s in samples], progress)[0]
    result = {"model": str(model), "folder": str(folder), "skipped": len(report.skipped),
              "size_bytes": m.size_bytes, **ev.to_dict()}
    per = "\n".join(f"  {c:<20} P {v['precision']:.3f}  R {v['recall']:.3f}  F1 {v['f1']:.3f}  n={v['support']}"
                    for c, v in ev.per_class().items())
    noun = "images" if m.modality == "image" else "clips"
    _emit(result, as_json, f"accuracy {ev.accuracy:.4f} on {len(samples)} {noun}"
                           f"{f' ({len(report.skipped)} skipped)' if report.skipped else ''}\n{per}")


@cli.command()
@click.argument("folder")  # a folder or an fsspec URL (data/sources.py)
@click.option("--task", type=click.Choice(["image", "audio"]), default=None, help="Default: detected from the files.")
@click.option("--json", "as_json", is_flag=True)
@_engine_flags
def validate(folder: Path, task: str | None, as_json: bool, engine: str, ray_address, ray_actors) -> None:
    """Check a data FOLDER without training: counts, skipped files and why, duplicates."""
    from .data.validate import validate_folder

    report = validate_folder(folder, progress=_progress(False, as_json), modality=task,
                             engine=_engine(_engine_options(engine, ray_address, ray_actors)))
    _emit(report.to_dict(), as_json, "\n".join(report.summary_lines()))


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def backbones(as_json: bool) -> None:
    """List the registered backbones."""
    from .backbones import list_backbones

    specs = list_backbones()
    rows = [{"name": s.name, "modality": s.modality,
             "input": f"{s.image.size}px" if s.image else f"{s.audio.window_seconds:.2f}s@{s.audio.sample_rate}Hz",
             "feature_dim": s.feature_dim, "parameters": s.parameters, "licence": s.licence,
             "weights": s.weights.package or s.weights.location} for s in specs]
    for row, s in zip(rows, specs):
        row["trained_per_run"] = s.weights.kind == "trained"
    _emit({"backbones": rows}, as_json, "\n".join(
        f"{r['name']:<24} {r['modality']:<6} " + (
            f"{'':<14} trained per run: {r['weights']}" if r["trained_per_run"] else
            f"{r['input']:<14} {r['parameters'] / 1e6:.1f}M params  dim {r['feature_dim']}  "
            f"licence {r['licence'].split(' ')[0]}  weights: {r['weights']}") for r in rows))


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def devices(as_json: bool) -> None:
    """Device presets for --device: each board's flash and RAM budget for the model, and why."""
    from .devices import DEVICES, table

    _emit({"devices": [d.to_dict() for d in DEVICES.values()]}, as_json, table())


@cli.command()
@click.argument("home", required=False, type=click.Path(path_type=Path))
@click.option("--model", type=click.Path(path_type=Path), default=None,
              help="Serve one exported model file as an HTTP API (POST /api/v1/predict) instead of projects.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback requires the token printed at start-up.")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Default: 8765, or a free port if taken.")
@click.option("--token", default=None, envvar="EDGEMAKER_TOKEN", help="Access token (default: generated when needed).")
@click.option("--no-browser", is_flag=True, help="Do not open the page in a browser.")
@click.option("--ray-address", default=None,
              help="Runs validate and extract on this Ray cluster (e.g. 10.0.0.5:6379; pip install 'edgemaker[ray]').")
def serve(home: Path | None, model: Path | None, host: str, port: int | None, token: str | None, no_browser: bool,
          ray_address: str | None) -> None:
    """The no-code web app: projects in HOME (default ./edgemaker-projects), each a folder of
    class folders that `edgemaker train HOME/<project>/data` also reads."""
    import os

    from .web import serve as run_server

    if ray_address:  # the training workers (web/worker.py) inherit it
        from .features.ray_engine import import_ray

        import_ray()
        os.environ["EDGEMAKER_RAY_ADDRESS"] = ray_address

    run_server(home, model, host, port, token, not no_browser, echo=lambda m: click.echo(m, err=True))

# --- dataset tools: `edgemaker data inspect|sample|split|clean` -------------------------------------
@cli.group()
def data() -> None:
    """Dataset tools: inspect a folder, take a balanced sample, split it, clean it (never writes DIR)."""


_task_option = click.option("--task", type=click.Choice(["image", "audio"]), default=None,
                            help="Default: detected from the files.")
_link_option = click.option("--link", is_flag=True,
                            help="Hard links (symbolic links across file systems) instead of copies.")


@data.command("inspect")
@click.argument("folder")  # a folder or an fsspec URL (data/sources.py)
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Also write inspect.json and an offline inspect.html (thumbnails, players) here.")
@click.option("--tiny", type=click.IntRange(min=1), default=10, show_default=True,
              help="Classes with fewer usable files are reported as tiny.")
@click.option("--near-bits", type=click.IntRange(min=0), default=None,
              help="Near-duplicate threshold in fingerprint bits (default: 16 of 128 for images, 10%% for sounds).")
@click.option("--label-issues", is_flag=True,
              help="Also list likely label errors (out-of-fold probabilities on pretrained embeddings).")
@click.option("--backbone", default=None, help="Backbone for --label-issues (default: efficientnet_lite0 / aisfx).")
@_task_option
@click.option("--json", "as_json", is_flag=True)
@click.option("--quiet", is_flag=True)
def data_inspect(folder: Path, out: Path | None, tiny: int, near_bits: int | None, label_issues: bool,
                 backbone: str | None, task: str | None, as_json: bool, quiet: bool) -> None:
    """Counts per class (and split), formats, sizes or durations, unusable files, exact and near
    duplicates, the same content under two labels, class balance and tiny classes; with
    --label-issues, files whose label the other files contradict."""
    from .atomic import write_json, write_text
    from .data.tools.html import render
    from .data.tools.inspect import inspect_folder, summary_text
    from .data.tools.output import check_out

    if out is not None:
        check_out(folder, out, must_be_new=False)
        if out.exists() and not out.is_dir():
            raise EdgemakerError(f"--out {out}: is a file; give a folder for inspect.json and inspect.html")
    if backbone and not label_issues:
        raise EdgemakerError("--backbone chooses the embeddings of --label-issues; add --label-issues")
    result = inspect_folder(folder, task, _progress(quiet, as_json), tiny=tiny, near_bits=near_bits,
                            label_issues=label_issues, backbone=backbone)
    text = summary_text(result)
    if out is not None:
        write_json(out / "inspect.json", result)
        write_text(out / "inspect.html", render(result, text))
        text += f"\nreport: {out / 'inspect.html'}"
    _emit(result, as_json, text)


@data.command("sample")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--per-class", type=int, required=True, help="Files to take from every class.")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="New folder to write.")
@click.option("--seed", type=int, callback=_seed, default=0, show_default=True)
@_link_option
@_task_option
@click.option("--json", "as_json", is_flag=True)
def data_sample(folder: Path, per_class: int, out: Path, seed: int, link: bool, task: str | None,
                as_json: bool) -> None:
    """A balanced, seeded subset: --per-class usable files of every class in OUT/<class>/."""
    from .data.tools.sample import sample_folder

    result = sample_folder(folder, out, per_class, seed, link, task, _progress(False, as_json))
    _emit(result, as_json, f"{result['files']} files ({per_class} from each of {result['classes']} classes, "
                           f"seed {seed}) -> {out}")


@data.command("split")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="New folder to write.")
@click.option("--val", type=float, default=0.1, show_default=True, help="Fraction of each class for val.")
@click.option("--test", type=float, default=0.1, show_default=True, help="Fraction of each class for test.")
@click.option("--seed", type=int, callback=_seed, default=0, show_default=True)
@click.option("--group-by", default=None,
              help="Regex on the file name; its first group (or whole match) is a group kept on one side, "
                   "e.g. '^(\\d+-\\d+)' for ESC-50 source ids.")
@_link_option
@_task_option
@click.option("--json", "as_json", is_flag=True)
def data_split(folder: Path, out: Path, val: float, test: float, seed: int, group_by: str | None, link: bool,
               task: str | None, as_json: bool) -> None:
    """Stratified, seeded OUT/{train,val,test}/<class>/ (a source with its own split is pooled first)."""
    from .data.tools.split import split_folder

    result = split_folder(folder, out, val, test, seed, group_by, link, task, _progress(False, as_json))
    sizes = {sp: sum(c.values()) for sp, c in result["counts"].items()}
    pooled = " (the source's own train/val/test were pooled)" if result["pooled_existing_split"] else ""
    _emit(result, as_json, f"train {sizes['train']}, val {sizes['val']}, test {sizes['test']}; "
                           f"{result['how']}{pooled} -> {out}")


@data.command("clean")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="New folder to write.")
@_link_option
@_task_option
@click.option("--json", "as_json", is_flag=True)
def data_clean(folder: Path, out: Path, link: bool, task: str | None, as_json: bool) -> None:
    """A copy without unusable files and extra exact copies; files under two labels are left out
    and listed (stdout and OUT/cross_label_duplicates.json) for you to decide."""
    from .data.tools.clean import clean_folder

    r = clean_folder(folder, out, link, task, _progress(False, as_json))
    lines = [f"kept {r['kept']} files; removed {len(r['removed_unusable'])} unusable and "
             f"{len(r['removed_duplicates'])} duplicate copies; left out {len(r['cross_label_duplicates'])} "
             f"content(s) found under two labels -> {out}"]
    lines += [f"  two labels ({' / '.join(x['classes'])}): {', '.join(x['paths'])}" for x in r["cross_label_duplicates"]]
    _emit(r, as_json, "\n".join(lines))
# --- end of dataset tools -----------------------------------------------------------------------------


# --- experiments: `edgemaker compare` and `edgemaker curve` (src/edgemaker/experiments/) ----------------
def _experiment_options(fn):
    for option in reversed([
        click.option("--out", "out", type=click.Path(path_type=Path), required=True,
                     help="Folder for results.json, table.txt, table.md, plot.svg and index.html."),
        click.option("--repeats", type=int, default=3, show_default=True, help="Training seeds per setting."),
        click.option("--seed", type=int, callback=_seed, default=0, show_default=True,
                     help="Seeds the one split; repeat r trains with seed + r."),
        click.option("--task", type=click.Choice(["image", "audio"]), default=None, help="Default: detected from the files."),
        click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Where embeddings are cached."),
        click.option("--threads", type=int, default=None, help="Inference threads (default: all cores)."),
        click.option("--quiet", is_flag=True, help="No progress output."),
        click.option("--json", "as_json", is_flag=True, help="Print results.json to stdout."),
    ]):
        fn = option(fn)
    return fn


def _experiment_done(result: dict, out: Path, as_json: bool, quiet: bool) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2))
    elif not quiet:
        click.echo((out / "table.txt").read_text().rstrip() + f"\npage: {out / 'index.html'}")


@cli.command()
@click.argument("data")  # a folder or an fsspec URL (data/sources.py)
@click.option("--backbones", required=True, help="Comma-separated backbone names (see `edgemaker backbones`), "
              "e.g. efficientnet_lite0,efficientnet_lite1,small_cnn.")
@_experiment_options
def compare(data: Path, backbones: str, out: Path, repeats: int, seed: int, task: str | None, cache_dir: Path | None,
            threads: int | None, quiet: bool, as_json: bool) -> None:
    """Train every backbone on one split of DATA and compare size, speed and accuracy (int8 file included)."""
    from .experiments.compare import run_compare

    result = run_compare(data, backbones, out, repeats, seed, task, cache_dir, _threads(threads),
                         _progress(quiet, as_json))
    _experiment_done(result, out, as_json, quiet)


@cli.command()
@click.argument("data")  # a folder or an fsspec URL (data/sources.py)
@click.option("--per-class", "per_class", default="10,30,100,300,all", show_default=True,
              help="Training examples per class to try (balanced, seeded subsets); 'all' = every training sample.")
@click.option("--backbone", default=None, help="Transfer-learning backbone (default: the task's default).")
@_experiment_options
def curve(data: Path, per_class: str, backbone: str | None, out: Path, repeats: int, seed: int, task: str | None,
          cache_dir: Path | None, threads: int | None, quiet: bool, as_json: bool) -> None:
    """Test accuracy by examples per class, with transfer learning and with small_cnn from scratch."""
    from .experiments.curve import run_curve

    result = run_curve(data, per_class, out, repeats, seed, task, backbone, cache_dir, _threads(threads),
                       _progress(quiet, as_json))
    _experiment_done(result, out, as_json, quiet)
# --- end of experiments -----------------------------------------------------------------------------


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except EdgemakerError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
