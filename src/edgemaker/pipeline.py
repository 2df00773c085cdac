"""One training run, folder in -> run folder out. The CLI and the web app are thin layers over it."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import replace
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import __version__
from .atomic import remove_stale, write_json, write_text
from .data.splits import SplitOptions, Splits, make_splits
from .data.validate import ValidationReport, validate_folder
from .errors import EdgemakerError
from .evaluate.label_issues import for_run
from .evaluate.metrics import Evaluation, evaluate_predictions, paired_loss
from .export.quantization import Quantization
from .export.runtime import ExportedModel, load_exported
from .faults import point
from .features.extract import ordered_map
from .progress import Progress, SilentProgress
from .export.session import ExportSession
from .tasks.classifier import Classifier, classifier_for
from .tasks.options import AutoOptions, ClassifierOptions

# format -> (runtime, quantization kind, audio front end in the graph; None: only where it stays full-integer)
FORMATS = {
    "onnx-fp32": ("onnx", "none", True), "onnx-int8": ("onnx", "int8", True),
    "onnx-dynamic": ("onnx", "dynamic", True), "onnx-fp16": ("onnx", "float16", True),
    "onnx-fp32-nofrontend": ("onnx", "none", False), "onnx-int8-nofrontend": ("onnx", "int8", False),
    "tflite-fp32": ("tflite", "none", True), "tflite-int8": ("tflite", "int8", None),
    "tflite-dynamic": ("tflite", "dynamic", True), "tflite-fp16": ("tflite", "float16", True),
    "c-array": ("c", "int8", None), "arduino": ("c", "int8", None),
}
FROM_TFLITE_INT8 = ("c-array", "arduino")  # made from the tflite-int8 file's bytes after it is evaluated
AUDIO_ONLY = ("onnx-fp32-nofrontend", "onnx-int8-nofrontend")
DEFAULT_FORMATS = ("onnx-fp32", "onnx-int8", "tflite-int8")
INT8_TOLERANCE = 0.01  # a quantized file more than 1 point below its fp32 source is reported loudly ...
SIGNIFICANCE = 0.05  # ... when the loss is statistically real (exact McNemar test)


def _frontend(fmt: str, modality: str) -> bool:
    """A full-int8 sound model takes log-mel: an int8 STFT would lose quiet sounds, and
    microcontrollers compute mel features in DSP anyway."""
    wanted = FORMATS[fmt][2]
    return modality == "image" if wanted is None else wanted


def parse_formats(text: str | Sequence[str], modality: str | None = None) -> tuple[str, ...]:
    items = [f.strip() for f in (text.split(",") if isinstance(text, str) else text) if f.strip()]
    unknown = [f for f in items if f not in FORMATS]
    if unknown or not items:
        raise EdgemakerError(f"unknown export format {unknown[0] if unknown else '(none)'!r}: choose from {', '.join(FORMATS)}")
    if modality == "image" and any(f in AUDIO_ONLY for f in items):
        raise EdgemakerError(f"export format {next(f for f in items if f in AUDIO_ONLY)!r} is for sound models only")
    return tuple(dict.fromkeys(items))


def _quantization(fmt: str, splits: Splits, modality: str) -> Quantization:
    kind = FORMATS[fmt][1]
    if kind == "int8":
        # Sounds give several windows per clip: calibrate on more of them (measured on ESC-10:
        # 600 windows kept the full-int8 TFLite file at fp32 accuracy, 200 lost a clip), and average
        # the windows' ranges (a third less probability error than the extremes on ESC-10).
        audio = modality == "audio"
        return Quantization.for_int8([s.path for s in splits.train], max_samples=600 if audio else 200,
                                     ranges="mean" if audio else "minmax")
    return {"none": Quantization.none(), "dynamic": Quantization.for_dynamic(), "float16": Quantization.for_float16()}[kind]


def evaluate_files(models: Sequence[ExportedModel], paths: Sequence[Path], labels: Sequence[str],
                   progress: Progress, workers: int = 4) -> list[Evaluation]:
    """Run every exported file on each input, prepared once per input kind; one Evaluation per file."""
    from concurrent.futures import ThreadPoolExecutor

    kinds = {m.input["kind"]: m for m in models}
    outputs: list[list[np.ndarray]] = [[] for _ in models]
    bar = progress.bar(len(paths), "evaluate exports")

    def prepare(path: Path) -> dict[str, np.ndarray]:
        return {kind: m.prepare(path) for kind, m in kinds.items()}

    with ThreadPoolExecutor(workers) as pool:
        for prepared in ordered_map(pool, [(p,) for p in paths], prepare, 2 * workers):
            for i, model in enumerate(models):
                outputs[i].append(model.predict_prepared(prepared[model.input["kind"]]))
            bar.update()
    bar.close()
    return [evaluate_predictions(m.labels, labels, np.stack(o) if o else np.zeros((0, len(m.labels))))
            for m, o in zip(models, outputs)]


def _check_out_dir(data_dir: Path, out_dir: Path) -> None:
    data, out = data_dir.resolve(), out_dir.resolve()
    if out == data or data in out.parents:
        raise EdgemakerError(f"{out_dir}: the output folder is inside the data folder {data_dir}; "
                             "choose --out outside it (your data folder is never written to)")
    if out.exists() and not out.is_dir():
        raise EdgemakerError(f"{out_dir}: exists and is not a folder; choose another --out")


def train_run(
    data_dir: str | Path,
    out_dir: str | Path,
    options: ClassifierOptions | None = None,
    split: SplitOptions | None = None,
    formats: Sequence[str] = DEFAULT_FORMATS,
    progress: Progress | None = None,
    task: str | None = None,
    max_flash: int | None = None,
    max_ram: int | None = None,
    auto: AutoOptions | None = None,
    distill: bool = False,
) -> dict:
    """Validate, split, extract, train, evaluate, export and report. Returns metrics.json's content.

    `task`: "image" or "audio"; None detects it from the files. `auto`: choose the backbone, input
    size and head settings on validation within a time budget (tasks/auto.py). `distill`: the student
    (the budget winner, --backbone, or small_cnn) learns the full model's probabilities (tasks/distill.py).
    """
    from .data.sources import data_root

    data_dir, out_dir = data_root(data_dir), Path(out_dir)  # a local Path, or a RemotePath for an fsspec URL
    options = options or ClassifierOptions()
    split = split or SplitOptions(seed=options.hparams.seed)
    formats = parse_formats(formats)
    progress = progress or SilentProgress()
    _check_out_dir(data_dir, out_dir)
    base = options.model.base_model
    if base is not None and not Path(base).expanduser().is_file():  # before any heavy work
        raise EdgemakerError(f"{base}: --base-model file not found")
    start = time.perf_counter()
    if distill and not options.model.backbone and not budget_targets(options, max_flash, max_ram):
        options = replace(options, model=replace(options.model, backbone="small_cnn"))  # the default student

    cache = Classifier.open_cache(options)
    try:
        report = validate_folder(data_dir, cache=cache, progress=progress, modality=task,
                                 engine=_engine(options))
        formats = parse_formats(formats, report.modality)
        splits = make_splits(report, split)
        for line in report.summary_lines():
            progress.log(line)
        t_validate = time.perf_counter() - start

        auto_record = budget_record = None
        if auto is not None:
            from .tasks.auto import search

            clf, auto_record = search(classifier_for(report.modality), splits.train, splits.val, options, auto,
                                      progress, cache, len(splits.test), max_flash, max_ram, start, formats)
            options = replace(clf.options, hparams=options.hparams)  # the winner's backbone and size, for config.json
        elif budget_targets(options, max_flash, max_ram):  # budgets as targets: the best model that fits
            from .tasks.budget_search import search as budget_search

            clf, budget_record = budget_search(classifier_for(report.modality), splits.train, splits.val, options,
                                               progress, cache, max_flash, max_ram)
            options = replace(clf.options, hparams=options.hparams)
            if not {"tflite-int8", "c-array"} & set(formats):  # the budget is confirmed on the real int8 file
                formats = (*formats, "tflite-int8")
        else:
            job_s = _ray_job(classifier_for(report.modality), splits, options, cache, progress)
            clf = classifier_for(report.modality).create(splits.train, splits.val, options, progress, cache)
            if job_s:
                clf.timings["extract_s"] = clf.timings.get("extract_s", 0.0) + job_s  # the splits' embeddings came from the one Ray job
        distill_record = None
        if distill:
            from .tasks.distill import distill as run_distill

            clf, distill_record = run_distill(classifier_for(report.modality), clf, splits, options, progress, cache)
        if clf.selection:
            progress.log("backbones by validation accuracy: " + ", ".join(
                f"{name} {v['val_accuracy']:.3f}" for name, v in clf.selection.items()) + f"; chose {clf.spec.name}")
        progress.log(f"trained: best epoch {clf.head.best_epoch_} of {len(clf.head.history_)} run")
        t0 = time.perf_counter()
        val_eval = clf.evaluate(splits.val)
        test_eval = clf.evaluate(splits.test)
        if clf.fine_tune:
            _fine_tune_test(clf, test_eval, splits, progress)
        t_eval = time.perf_counter() - t0
        progress.log(f"test accuracy (float model): {test_eval.accuracy:.4f}")
        explanations = _explain(clf, splits, test_eval, progress)
        label_issues = for_run(clf, report._rel, progress)  # evaluate/label_issues.py; never fails a run

        t0 = time.perf_counter()
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale(out_dir)  # a killed earlier run's temporary files
        session = clf.export_session(out_dir)
        exported, refused = _export_all(session, formats, splits, report.modality, progress)
        models = [load_exported(path, options.threads) for _, path in exported]
        file_evals = evaluate_files(models, [s.path for s in splits.test], [s.label for s in splits.test], progress)
        exports = []
        evals = {fmt: ev for (fmt, _), ev in zip(exported, file_evals)}
        for (fmt, path), model, ev in zip(exported, models, file_evals):
            entry = {
                "format": fmt,
                "path": path.name,
                "size_bytes": path.stat().st_size,
                "test_accuracy": round(ev.accuracy, 4),
                "agreement_with_float": round(ev.agreement(test_eval), 4),
                "latency_ms": round(model.latency_ms(), 3),
                "vs_float": paired_loss(evals.get(_float_source(fmt), test_eval), ev).to_dict(),
                "quantization": model.metadata["quantization"],
                "input": model.input["kind"],
                "peak_ram_bytes": None,
                "macs": None,
            }
            if path.suffix == ".tflite":
                from .export.device import budget

                b = budget(path, measure=False)
                tflm = _tflm_check(session, model, [s.path for s in splits.test], progress, b.macs)
                b.arena_bytes = tflm.arena_bytes if tflm else None
                entry.update(peak_ram_bytes=b.peak_ram_bytes, macs=b.macs, arena_bytes=b.arena_bytes)
                if tflm:
                    tflm.estimate_bytes = b.peak_ram_bytes
                    entry["tflm"] = tflm.to_dict()
            exports.append(entry)
        if "c-array" in formats:
            if any(e["format"] == "tflite-int8" for e in exports):
                exports.append(_c_array(out_dir, exports, clf))
            else:
                refused.append({"format": "c-array", "reason": "it holds the tflite-int8 file, which was refused"})
        if "arduino" in formats:
            if any(e["format"] == "tflite-int8" for e in exports):
                litert = next(m for (fmt, _), m in zip(exported, models) if fmt == "tflite-int8")
                exports.append(_arduino(out_dir, exports, litert, splits, data_dir))
            else:
                refused.append({"format": "arduino", "reason": "it holds the tflite-int8 file, which was refused"})
        for fp32_name, fmt in (("model_fp32.onnx", "onnx-fp32"), ("model_fp32_nofrontend.onnx", "onnx-fp32-nofrontend"),
                               ("model_fp32.tflite", "tflite-fp32"), ("model_fp32_nofrontend.tflite", "tflite-fp32")):
            if fmt not in formats:  # an fp32 file is the source of the quantized ones; keep it only if asked
                (out_dir / fp32_name).unlink(missing_ok=True)
                (out_dir / (fp32_name + ".json")).unlink(missing_ok=True)
        t_export = time.perf_counter() - t0
    finally:
        cache.close()

    from .export.tflm import warnings as tflm_warnings

    warnings = [f"{r['format']} refused: {r['reason']}" for r in refused] + \
        _accuracy_warnings(exports, test_eval, report.modality) + tflm_warnings(exports)
    for w in warnings:
        progress.log(f"WARNING: {w}")
    timings = {
        "validate_s": t_validate,
        "extract_s": clf.timings["extract_s"],
        "train_s": clf.timings["train_s"],
        **({"fine_tune_s": clf.timings["fine_tune_s"]} if "fine_tune_s" in clf.timings else {}),
        "evaluate_s": t_eval,
        "gradcam_s": explanations.seconds,
        "label_issues_s": label_issues.seconds,
        "export_s": t_export,
    }
    timings["total_s"] = time.perf_counter() - start
    timings = {k: round(v, 3) for k, v in timings.items()}
    timings["export_steps"] = dict(session.timings)
    metrics = _metrics(report, splits, clf, val_eval, test_eval, exports, warnings, options, split, timings,
                       session.int8_choice, refused)
    write_text(out_dir / "labels.txt", "\n".join(clf.classes) + "\n")
    write_json(out_dir / "split.json", _split_record(report, splits))
    write_json(out_dir / "config.json", {"task": report.modality, "options": options.to_dict(), "split": vars(split),
                                         "formats": list(formats)})
    from .evaluate.report import write_report

    budget_problems = check_budgets(exports, max_flash, max_ram)
    if auto_record is not None:
        metrics["auto"] = auto_record.to_dict()
    if distill_record is not None:
        metrics["distill"] = distill_record.to_dict()
    if budget_record is not None:
        from .tasks.budget_search import confirm, frontier_svg

        confirm(budget_record, exports)
        metrics["budget_search"] = budget_record.to_dict()
        write_text(out_dir / "frontier.svg", frontier_svg(metrics["budget_search"]))
    metrics["budget"] = {"max_flash_bytes": max_flash, "max_ram_bytes": max_ram, "problems": budget_problems}
    metrics["explanations"] = explanations.to_dict()
    metrics["label_issues"] = label_issues.to_dict()
    write_json(out_dir / "metrics.json", metrics)
    write_report(out_dir / "report.html", metrics, splits, test_eval, explanations=explanations.overlays())
    if budget_problems:
        raise EdgemakerError(budget_problems[0])
    return metrics


def _explain(clf: Classifier, splits: Splits, test_eval: Evaluation, progress: Progress):
    """Grad-CAM of the misclassified test images for the report (evaluate/gradcam.py); never fails a run."""
    from .evaluate.gradcam import Explanations, explain_misclassified

    try:
        out = explain_misclassified(clf, splits.test, test_eval)
    except Exception as exc:  # noqa: BLE001 - an explanation must never cost the user the trained model
        out = Explanations(skipped=f"Grad-CAM failed ({type(exc).__name__}: {exc})",
                           total_wrong=int((test_eval.y_pred != test_eval.y_true).sum()))
    if out.items:
        progress.log(f"Grad-CAM: {len(out.items)} misclassified test images explained ({out.seconds:.1f} s)")
    return out


def _engine(options: ClassifierOptions):
    """The Ray engine when asked for (features/engines.py); None: validation in threads here."""
    if options.engine.kind == "local":
        return None
    from .features.engines import engine_for

    return engine_for(options.engine)


def _ray_job(classifier, splits: Splits, options: ClassifierOptions, cache, progress: Progress) -> float:
    """--engine ray: every split's embeddings in one Ray job before create() (features/ray_job.py)."""
    if options.engine.kind != "ray":
        return 0.0
    from .features.ray_job import embed_run

    return embed_run(classifier, splits, options, cache, progress)


def _fine_tune_test(clf: Classifier, test_eval: Evaluation, splits: Splits, progress: Progress) -> None:
    """Head-only vs fine-tuned test accuracy for the report (the head-only model's embeddings are cached)."""
    head_only = clf.head_only if clf.head_only is not None else clf
    before = test_eval if head_only is clf else head_only.evaluate(splits.test)
    clf.fine_tune["head_only"]["test_accuracy"] = round(before.accuracy, 4)
    clf.fine_tune["fine_tuned"]["test_accuracy"] = round(test_eval.accuracy, 4)
    progress.log(f"fine-tune: test accuracy head only {before.accuracy:.4f}, chosen model {test_eval.accuracy:.4f}")


def _export_all(session: ExportSession, formats: Sequence[str], splits: Splits, modality: str, progress: Progress):
    """([(format, path)] for every file written, [{format, reason}] for every int8 file refused);
    c-array is built from tflite-int8 afterwards."""
    from .export.base import exporter_for

    wanted = [f for f in formats if f not in FROM_TFLITE_INT8]
    if any(f in formats for f in FROM_TFLITE_INT8) and "tflite-int8" not in wanted:
        wanted.append("tflite-int8")  # the C array holds exactly this file's bytes
    for runtime in dict.fromkeys(FORMATS[f][0] for f in wanted):
        exporter_for(runtime)  # a missing extra is said before any work
    out, refused = [], []
    bar = progress.bar(len(wanted), "export")
    for fmt in wanted:
        runtime = FORMATS[fmt][0]
        point(f"export:{fmt}")
        path = session.export(runtime, _quantization(fmt, splits, modality), _frontend(fmt, modality))
        if path is None:
            choice = session.int8_choice[runtime + ("" if _frontend(fmt, modality) else "-nofrontend")]
            refused.append({"format": fmt, "reason": choice["refused"]})
        else:
            out.append((fmt, path))
        bar.update()
    bar.close()
    return out, refused


def _c_array(out_dir: Path, exports: list[dict], clf: Classifier) -> dict:
    from .export.device import write_c_array
    from .export.tflite import read_metadata

    source = next(e for e in exports if e["format"] == "tflite-int8")
    tflite = out_dir / source["path"]
    _, cc = write_c_array(tflite, out_dir, read_metadata(tflite))
    return {**source, "format": "c-array", "path": cc.name, "size_bytes": tflite.stat().st_size,
            "source": source["path"], "note": "model_data.cc holds exactly the bytes of " + source["path"]}


def _arduino(out_dir: Path, exports: list[dict], litert: ExportedModel, splits: Splits, data_dir: Path) -> dict:
    """The Arduino library (export/arduino.py) around tflite-int8's bytes; its example input is a test file."""
    from .export.arduino import library_name, write_library, zip_library
    from .export.snippets import tflite_ops
    from .export.tflite import read_metadata

    source = next(e for e in exports if e["format"] == "tflite-int8")
    tflite = out_dir / source["path"]
    sample = (splits.test or splits.val or splits.train)[0]
    windows = litert.prepare(sample.path)
    said = litert.labels[int(litert.predict_proba(windows[:1])[0].argmax())]
    note = f"{Path(sample.path).name} (label {sample.label}; LiteRT says {said})"
    name = library_name(data_dir.resolve().name)
    root = write_library(tflite, out_dir / "arduino", read_metadata(tflite), name, tflite_ops(tflite) or [],
                         windows[0], note, source.get("arena_bytes"), source["peak_ram_bytes"])
    archive = zip_library(root, out_dir / f"{name}.zip")
    return {**source, "format": "arduino", "path": archive.name, "folder": root.relative_to(out_dir).as_posix(),
            "size_bytes": tflite.stat().st_size, "source": source["path"],
            "note": f"an Arduino library (zip and folder) holding exactly the bytes of {source['path']}"}


def _tflm_check(session: ExportSession, model: ExportedModel, test: list[Path], progress: Progress, macs: int):
    """A full-int8 .tflite file run in TensorFlow Lite Micro beside LiteRT (export/tflm.py); None for others."""
    if model.metadata["quantization"] != "int8":
        return None
    from .export import tflm

    t0 = time.perf_counter()
    result = tflm.check(model, test, macs=macs)
    session.timings["tflm_check_s"] = round(session.timings.get("tflm_check_s", 0.0) + time.perf_counter() - t0, 3)
    if result.status == "ok":
        progress.log(f"TFLite Micro: {model.path.name} agrees with LiteRT on {result.agreement_with_litert:.1%} of "
                     f"{result.samples} test {'images' if model.modality == 'image' else 'windows'}; arena "
                     f"{result.arena_bytes / 1e3:.1f} kB measured")
    else:
        progress.log(f"TFLite Micro check {result.status}: {result.message}")
    return result


def budget_targets(options: ClassifierOptions, max_flash: int | None, max_ram: int | None) -> bool:
    """A budget with no fixed backbone is a target (tasks/budget_search.py); with one, only a check."""
    return (max_flash is not None or max_ram is not None) and not options.model.backbone \
        and options.model.base_model is None


def check_budgets(exports: list[dict], max_flash: int | None, max_ram: int | None) -> list[str]:
    from .export.device import Budget, check_budget

    problems = []
    for e in exports:
        if e["peak_ram_bytes"] is None:
            continue
        b = Budget(e["size_bytes"], e["peak_ram_bytes"], e["macs"] or 0, 0, e.get("arena_bytes"))
        msg = check_budget(e["path"], b, max_flash, max_ram)
        if msg:
            problems.append(msg)
    return problems


def _float_source(fmt: str) -> str:
    """The format of the float file a quantized format was made from."""
    family = "tflite" if fmt.startswith(("tflite", "c-")) else "onnx"
    return f"{family}-fp32" + ("-nofrontend" if fmt.endswith("nofrontend") else "")


def _accuracy_warnings(exports: list[dict], float_eval: Evaluation, modality: str) -> list[str]:
    """A quantized file is reported when it loses more than a point against its float source AND the
    loss is statistically real (exact McNemar, p < 0.05): on 12 test images one flipped image is 8
    points and proves nothing; on 300 images a 2-point loss does."""
    out = []
    n = len(float_eval.y_true)
    what = "clips" if modality == "audio" else "images"
    for e in exports:
        if e["quantization"] == "none" or e["format"] in FROM_TFLITE_INT8:  # tflite-int8's bytes
            continue
        fp32 = next((x["test_accuracy"] for x in exports if x["format"] == _float_source(e["format"])),
                    round(float_eval.accuracy, 4))
        vs = e["vs_float"]
        if fp32 - e["test_accuracy"] > INT8_TOLERANCE and vs["p_value"] < SIGNIFICANCE:
            low, high = vs["loss_interval"]
            out.append(f"{e['format']} loses {100 * (fp32 - e['test_accuracy']):.1f} points of test accuracy against "
                       f"fp32 ({e['test_accuracy']:.4f} vs {fp32:.4f}: {vs['lost']} right only in fp32, {vs['gained']} "
                       f"only in {e['format']}, of {n} test {what}; 95% interval of the loss {100 * low:.1f} to "
                       f"{100 * high:.1f} points, McNemar p = {vs['p_value']:.3f}); prefer the fp32 file, or add more "
                       f"varied training {what} for calibration")
    return out


def _split_record(report: ValidationReport, splits: Splits) -> dict:
    rel = report._rel
    return {"how": splits.how, "root": str(report.root),
            "files": [{"path": rel(s.path), "label": s.label, "split": name, "sha256": s.content}
                      for name, samples in splits.items() for s in samples]}


def _misclassified(report: ValidationReport, splits: Splits, ev: Evaluation) -> list[dict]:
    """Test samples the float model got wrong, most confident mistakes first."""
    wrong = np.flatnonzero(ev.y_pred != ev.y_true)
    rows = [{"path": report._rel(splits.test[i].path), "label": ev.classes[ev.y_true[i]],
             "predicted": ev.classes[ev.y_pred[i]], "confidence": round(float(ev.probabilities[i].max()), 4)}
            for i in wrong]
    return sorted(rows, key=lambda r: -r["confidence"])


def _metrics(report, splits, clf, val_eval, test_eval, exports, warnings, options, split, timings,
             int8_choice, refused) -> dict:
    spec = clf.spec
    test = test_eval.to_dict()
    return {
        "edgemaker_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "task": f"{report.modality}_classification",
        "classes": clf.classes,
        "splits": splits.sizes(),
        "split_how": splits.how,
        "data": report.to_dict(),
        "backbone": {"name": spec.name, "feature_dim": spec.feature_dim, "parameters": spec.parameters,
                     "licence": spec.licence, "description": spec.description,
                     **({"input_size": spec.image.size} if spec.image else
                        {"sample_rate": spec.audio.sample_rate, "window_seconds": round(spec.audio.window_seconds, 4),
                         "hop_seconds": round(spec.audio.hop_samples / spec.audio.sample_rate, 4),
                         "frontend": spec.audio.frontend}),
                     "selection": clf.selection or None},
        "training": {
            "best_epoch": clf.head.best_epoch_,
            "epochs_run": len(clf.head.history_),
            "augmented_views": clf.options.augmentation.active_views,  # as chosen (head_selection)
            "head_selection": clf.head_selection.to_dict() if clf.head_selection else None,
            "class_weights": clf.head.class_weights_,
            "int8_head_choice": int8_choice or None,
            "network": clf.network or None,
            "history": [vars(h) for h in clf.head.history_],
        },
        "fine_tune": clf.fine_tune or None,
        "val": {"accuracy": round(val_eval.accuracy, 4), "loss": round(val_eval.loss, 4)},
        "test": test,
        "per_class": test["per_class"],
        "confusion_matrix": test["confusion_matrix"],
        "misclassified": _misclassified(report, splits, test_eval),
        "timings": timings,
        "exports": exports,
        "refused": refused,
        "warnings": warnings,
    }
