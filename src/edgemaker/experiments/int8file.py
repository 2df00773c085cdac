"""The int8 .tflite file of one fitted classifier, as `train` makes it (pipeline's quantization
settings, the int8 flow's validation check), with what a device needs to know: its size and its
float source's, its test accuracy, arena RAM estimate and MACs. Built once per (backbone weights,
head, data) and remembered under the cache, so a repeated compare copies it instead of converting."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, write_json
from ..data.splits import Splits
from ..paths import cache_dir as default_cache_dir
from ..progress import Progress

FILE = "model_int8.tflite"


def export_code_id(root: Path | None = None) -> str:
    """A digest of the code that builds int8 files (export/ and backbones/): a stored file made by other
    code is not reused, even while the package version stays the same."""
    root = root or Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted([*(root / "export").glob("*.py"), *(root / "backbones").glob("*.py")]):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _key(clf, splits: Splits, quantization) -> str:
    from .. import __version__

    h = hashlib.sha256()
    for part in (clf.spec.cache_id, __version__, export_code_id(), repr(quantization.max_samples), repr(quantization.ranges),
                 "\n".join(clf.classes), repr(clf.options.silence)):
        h.update(part.encode() + b"\0")
    for arr in (clf.head.coef_, clf.head.intercept_):
        h.update(np.ascontiguousarray(arr, np.float32).tobytes())
    for name, samples in splits.items():
        h.update(name.encode() + "".join(f"{s.content}:{s.label};" for s in samples).encode())
    return h.hexdigest()[:24]


def int8_file(clf, splits: Splits, modality: str, folder: Path, progress: Progress,
              threads: int | None = None) -> dict:
    """Write folder/model_int8.tflite (reused from the cache when the same model was built before);
    returns its record: sizes, test accuracy, peak RAM, MACs, the int8 choice, or why it was refused."""
    from ..export.stage import frontend_in_graph, quantization_for

    quantization = quantization_for("tflite-int8", [s.path for s in splits.train], modality)
    stored = (clf.options.cache_dir or default_cache_dir()) / "experiments" / "int8" / _key(clf, splits, quantization)
    folder.mkdir(parents=True, exist_ok=True)
    if (stored / "record.json").is_file():
        record = json.loads((stored / "record.json").read_text())
        if record.get("refused") or (stored / FILE).is_file():
            for name in (FILE, FILE + ".json"):
                if (stored / name).is_file():
                    with atomic_path(folder / name) as tmp:
                        shutil.copyfile(stored / name, tmp)
            return {**record, "reused": True}
    record = _build(clf, splits, modality, folder, quantization, frontend_in_graph("tflite-int8", modality), progress, threads)
    for name in (FILE, FILE + ".json"):
        if (folder / name).is_file():
            with atomic_path(stored / name) as tmp:
                shutil.copyfile(folder / name, tmp)
    write_json(stored / "record.json", record)  # last: its presence means the entry is complete
    return {**record, "reused": False}


def _build(clf, splits: Splits, modality: str, folder: Path, quantization, frontend: bool, progress: Progress,
           threads: int | None) -> dict:
    import time

    from ..export.exporters import exporter_for
    from ..export.device import budget
    from ..export.runtime import load_exported
    from ..pipeline import evaluate_files

    t0 = time.perf_counter()
    exporter = exporter_for("tflite")  # a missing extra says so here
    session = clf.export_session(folder)
    path = session.export("tflite", quantization, frontend)
    fp32 = session.float_file(exporter, frontend)
    record: dict = {"file": FILE, "frontend_in_file": frontend, "fp32_bytes": fp32.stat().st_size,
                    "int8_choice": session.int8_choice.get("tflite" + ("" if frontend else "-nofrontend"))}
    for p in (fp32, fp32.with_name(fp32.name + ".json")):  # the float source is measured, not kept
        p.unlink(missing_ok=True)
    if path is None:
        record.update(refused=record["int8_choice"]["refused"], int8_bytes=None, test_accuracy=None,
                      peak_ram_bytes=None, macs=None)
    else:
        if path.name != FILE:
            path.replace(folder / FILE)
            path.with_name(path.name + ".json").replace(folder / (FILE + ".json"))
            path = folder / FILE
        ev = evaluate_files([load_exported(path, threads)], [s.path for s in splits.test],
                            [s.label for s in splits.test], progress)[0]
        b = budget(path)
        record.update(int8_bytes=path.stat().st_size, test_accuracy=round(ev.accuracy, 4),
                      peak_ram_bytes=b.peak_ram_bytes, macs=b.macs, operators=b.operators)
    record["build_s"] = round(time.perf_counter() - t0, 3)
    return record


def depth(onnx_path: Path) -> int:
    """Weight layers (convolutions and dense layers) in the backbone's graph, plus the head: the
    'depth' column of `edgemaker compare`, counted the same way for every backbone."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return 1 + sum(node.op_type in ("Conv", "ConvTranspose", "Gemm") for node in model.graph.node)


def seconds_per_sample(backbone, samples: Sequence, options) -> float:
    """Decode + embed of a few test samples without the cache: what extraction costs per new sample."""
    import time

    from ..features.extract import extract_embeddings

    few = list(samples)[:8]
    if not few:
        return 0.0
    t0 = time.perf_counter()
    extract_embeddings(few, backbone, None, silence=options.silence)
    return (time.perf_counter() - t0) / len(few)
