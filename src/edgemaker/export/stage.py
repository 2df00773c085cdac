"""The export stage: every asked format written from one ExportSession, each file run again on the test
split, and one record per file (size, accuracy, agreement, latency, RAM, TFLite Micro check).

It knows nothing of training: it takes the session (the float model and its int8 helpers), the
samples and the float model's test Evaluation, and returns records that the report reads.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import EdgemakerError
from ..evaluate.metrics import Evaluation, evaluate_predictions, paired_loss
from ..faults import point
from ..parallel import ordered_map
from ..progress import Progress
from .quantization import Quantization
from .runtime import ExportedModel, load_exported
from .session import ExportSession

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


@dataclass
class ExportResult:
    exports: list[dict] = field(default_factory=list)  # one record per file written
    refused: list[dict] = field(default_factory=list)  # {format, reason} for each format not written
    seconds: float = 0.0


def frontend_in_graph(fmt: str, modality: str) -> bool:
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


def quantization_for(fmt: str, train_paths: Sequence[Path], modality: str) -> Quantization:
    kind = FORMATS[fmt][1]
    if kind == "int8":
        # Sounds give several windows per clip: calibrate on more of them (measured on ESC-10:
        # 600 windows kept the full-int8 TFLite file at fp32 accuracy, 200 lost a clip), and average
        # the windows' ranges (a third less probability error than the extremes on ESC-10).
        audio = modality == "audio"
        return Quantization.for_int8(list(train_paths), max_samples=600 if audio else 200,
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


def export_stage(session: ExportSession, formats: Sequence[str], splits, modality: str, test_eval: Evaluation,
                 library_name_from: str, threads: int | None, progress: Progress) -> ExportResult:
    """Write, re-evaluate and record every format. `splits`: anything with train/val/test lists of
    samples (path, label); `library_name_from`: the data folder's name, for the Arduino library."""
    t0 = time.perf_counter()
    out_dir = session.out_dir
    exported, refused = _write_all(session, formats, splits, modality, progress)
    models = [load_exported(path, threads) for _, path in exported]
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
            "vs_float": paired_loss(evals.get(float_source(fmt), test_eval), ev).to_dict(),
            "quantization": model.metadata["quantization"],
            "input": model.input["kind"],
            "peak_ram_bytes": None,
            "macs": None,
        }
        if path.suffix == ".tflite":
            from .device import budget

            b = budget(path, measure=False)
            tflm = _tflm_check(session, model, [s.path for s in splits.test], progress, b.macs)
            b.arena_bytes = tflm.arena_bytes if tflm else None
            entry.update(peak_ram_bytes=b.peak_ram_bytes, macs=b.macs, arena_bytes=b.arena_bytes)
            if tflm:
                tflm.estimate_bytes = b.peak_ram_bytes
                entry["tflm"] = tflm.to_dict()
        exports.append(entry)
    has_int8_tflite = any(e["format"] == "tflite-int8" for e in exports)
    for fmt in FROM_TFLITE_INT8:
        if fmt not in formats:
            continue
        if not has_int8_tflite:
            refused.append({"format": fmt, "reason": "it holds the tflite-int8 file, which was refused"})
        elif fmt == "c-array":
            exports.append(_c_array(out_dir, exports))
        else:
            litert = next(m for (f, _), m in zip(exported, models) if f == "tflite-int8")
            exports.append(_arduino(out_dir, exports, litert, splits, library_name_from))
    for fp32_name, fmt in (("model_fp32.onnx", "onnx-fp32"), ("model_fp32_nofrontend.onnx", "onnx-fp32-nofrontend"),
                           ("model_fp32.tflite", "tflite-fp32"), ("model_fp32_nofrontend.tflite", "tflite-fp32")):
        if fmt not in formats:  # an fp32 file is the source of the quantized ones; keep it only if asked
            (out_dir / fp32_name).unlink(missing_ok=True)
            (out_dir / (fp32_name + ".json")).unlink(missing_ok=True)
    return ExportResult(exports, refused, time.perf_counter() - t0)


def _write_all(session: ExportSession, formats: Sequence[str], splits, modality: str, progress: Progress):
    """([(format, path)] for every file written, [{format, reason}] for every int8 file refused);
    c-array is built from tflite-int8 afterwards."""
    from .exporters import exporter_for

    wanted = [f for f in formats if f not in FROM_TFLITE_INT8]
    if any(f in formats for f in FROM_TFLITE_INT8) and "tflite-int8" not in wanted:
        wanted.append("tflite-int8")  # the C array holds exactly this file's bytes
    for runtime in dict.fromkeys(FORMATS[f][0] for f in wanted):
        exporter_for(runtime)  # a missing extra is said before any work
    out, refused = [], []
    bar = progress.bar(len(wanted), "export")
    train_paths = [s.path for s in splits.train]
    for fmt in wanted:
        runtime = FORMATS[fmt][0]
        point(f"export:{fmt}")
        frontend = frontend_in_graph(fmt, modality)
        path = session.export(runtime, quantization_for(fmt, train_paths, modality), frontend)
        if path is None:
            choice = session.int8_choice[runtime + ("" if frontend else "-nofrontend")]
            refused.append({"format": fmt, "reason": choice["refused"]})
        else:
            out.append((fmt, path))
        bar.update()
    bar.close()
    return out, refused


def _c_array(out_dir: Path, exports: list[dict]) -> dict:
    from .device import write_c_array
    from .tflite import read_metadata

    source = next(e for e in exports if e["format"] == "tflite-int8")
    tflite = out_dir / source["path"]
    _, cc = write_c_array(tflite, out_dir, read_metadata(tflite))
    return {**source, "format": "c-array", "path": cc.name, "size_bytes": tflite.stat().st_size,
            "source": source["path"], "note": "model_data.cc holds exactly the bytes of " + source["path"]}


def _arduino(out_dir: Path, exports: list[dict], litert: ExportedModel, splits, data_name: str) -> dict:
    """The Arduino library (export/arduino.py) around tflite-int8's bytes; its example input is a test file."""
    from .arduino import library_name, write_library, zip_library
    from .snippets import tflite_ops
    from .tflite import read_metadata

    source = next(e for e in exports if e["format"] == "tflite-int8")
    tflite = out_dir / source["path"]
    sample = (splits.test or splits.val or splits.train)[0]
    windows = litert.prepare(sample.path)
    said = litert.labels[int(litert.predict_proba(windows[:1])[0].argmax())]
    note = f"{Path(sample.path).name} (label {sample.label}; LiteRT says {said})"
    name = library_name(data_name)
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
    from . import tflm

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


def check_budgets(exports: list[dict], max_flash: int | None, max_ram: int | None) -> list[str]:
    from .device import Budget, check_budget

    problems = []
    for e in exports:
        if e["peak_ram_bytes"] is None:
            continue
        b = Budget(e["size_bytes"], e["peak_ram_bytes"], e["macs"] or 0, 0, e.get("arena_bytes"))
        msg = check_budget(e["path"], b, max_flash, max_ram)
        if msg:
            problems.append(msg)
    return problems


def float_source(fmt: str) -> str:
    """The format of the float file a quantized format was made from."""
    family = "tflite" if fmt.startswith(("tflite", "c-")) else "onnx"
    return f"{family}-fp32" + ("-nofrontend" if fmt.endswith("nofrontend") else "")


def export_warnings(result: ExportResult, float_eval: Evaluation, modality: str) -> list[str]:
    """Refused formats, statistically real int8 losses and TFLite Micro disagreements, one line each."""
    from .tflm import warnings as tflm_warnings

    return [f"{r['format']} refused: {r['reason']}" for r in result.refused] + \
        accuracy_warnings(result.exports, float_eval, modality) + tflm_warnings(result.exports)


def accuracy_warnings(exports: list[dict], float_eval: Evaluation, modality: str) -> list[str]:
    """A quantized file is reported when it loses more than a point against its float source AND the
    loss is statistically real (exact McNemar, p < 0.05): on 12 test images one flipped image is 8
    points and proves nothing; on 300 images a 2-point loss does."""
    out = []
    n = len(float_eval.y_true)
    what = "clips" if modality == "audio" else "images"
    for e in exports:
        if e["quantization"] == "none" or e["format"] in FROM_TFLITE_INT8:  # tflite-int8's bytes
            continue
        fp32 = next((x["test_accuracy"] for x in exports if x["format"] == float_source(e["format"])),
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
