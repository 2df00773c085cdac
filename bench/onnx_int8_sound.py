"""Which ONNX int8 route keeps a model at float accuracy? One float model, quantized many ways
(calibration method, ranges, windows, layers kept in float), each file scored on validation and test
at sample level (a clip is the mean of its windows) against the labels and against the fp32 file.

    python bench/onnx_int8_sound.py DATA [--routes a,b,...] [--out bench-onnx-int8-sound.json]

Validation is what chooses; test is printed to report, never to choose.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from edgemaker.export.onnx_model import ONNX_INT8_ROUTE

# Routes measured against the default; keys override ONNX_INT8_ROUTE (max_samples and ranges: the calibration).
ROUTE_CANDIDATES = {
    "default": {},
    "ranges-minmax": {"ranges": "minmax"},
    "percentile": {"calibration": "percentile", "percentile": 99.999},
    "percentile-99.99": {"calibration": "percentile", "percentile": 99.99},
    "entropy": {"calibration": "entropy"},
    "first-conv-float": {"keep_float": ("first_conv",)},
    "last-conv-float": {"keep_float": ("last_conv",)},
    "all-windows": {"max_samples": 100000},
    "qdq": {"format": "QDQ"},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("--routes", default=",".join(ROUTE_CANDIDATES))
    ap.add_argument("--out", type=Path, default=Path("bench-onnx-int8-sound.json"))
    args = ap.parse_args()

    from edgemaker.data.splits import SplitOptions, make_splits
    from edgemaker.data.validate import validate_folder
    from edgemaker.export.exporters import exporter_for
    from edgemaker.export.onnx_model import quantize
    from edgemaker.export.runtime import ExportedModel
    from edgemaker.export.stage import quantization_for
    from edgemaker.tasks.classifier import classifier_for

    report = validate_folder(args.data)
    splits = make_splits(report, SplitOptions())
    clf = classifier_for(report.modality).create(splits.train, splits.val)
    tmp = Path(tempfile.mkdtemp(prefix="int8-sound-"))
    session = clf.export_session(tmp)
    fp32 = session.float_file(exporter_for("onnx"))
    meta = clf.metadata("int8")
    q = quantization_for("onnx-int8", [s.path for s in splits.train], report.modality)
    parts = {"val": splits.val, "test": splits.test}
    windows = {k: session.inputs.files([s.path for s in v], meta) for k, v in parts.items()}
    labels = {k: np.array([clf.classes.index(s.label) for s in v]) for k, v in parts.items()}

    def run(path: Path) -> dict[str, list[np.ndarray]]:
        """Per split, per file: its windows' probabilities."""
        model = ExportedModel(path)
        return {k: [np.concatenate([model.predict_proba(w[i : i + 16]) for i in range(0, len(w), 16)]) for w in ws]
                for k, ws in windows.items()}

    def latency_ms(path: Path) -> float:
        return round(ExportedModel(path, threads=1).latency_ms(runs=30), 2)

    ref_windows = run(fp32)
    ref = {k: np.array([p.mean(0).argmax() for p in v]) for k, v in ref_windows.items()}
    results = {"data": str(args.data), "fp32": {k: round(float((ref[k] == labels[k]).mean()), 4) for k in ref},
               "fp32_size_bytes": fp32.stat().st_size, "fp32_latency_ms": latency_ms(fp32), "routes": {}}
    print("fp32", results["fp32"], flush=True)
    for name in args.routes.split(","):
        route = {**ONNX_INT8_ROUTE, **ROUTE_CANDIDATES[name]}
        rq = quantization_for("onnx-int8", [s.path for s in splits.train], report.modality)
        if route.get("max_samples"):
            from edgemaker.export.quantization import Quantization

            rq = Quantization.for_int8(q.representative, route["max_samples"], q.per_channel, route.get("ranges", q.ranges))
        elif route.get("ranges"):
            from edgemaker.export.quantization import Quantization

            rq = Quantization.for_int8(q.representative, q.max_samples, q.per_channel, route["ranges"])
        calibration = session.inputs.calibration(rq, clf.metadata())
        t0 = time.perf_counter()
        path = quantize(fp32, tmp / f"{name}.onnx", rq, meta, calibration, route)
        secs = time.perf_counter() - t0
        out = run(path)
        pred = {k: np.array([p.mean(0).argmax() for p in v]) for k, v in out.items()}
        row = {"quantize_s": round(secs, 1), "size_bytes": path.stat().st_size, "calibration_windows": len(calibration),
               "latency_ms": latency_ms(path)}
        for k, p in pred.items():
            win, ref_win = np.concatenate(out[k]), np.concatenate(ref_windows[k])
            clip_err = [np.abs(a.mean(0) - b.mean(0)).sum() / 2 for a, b in zip(out[k], ref_windows[k])]
            row[k] = {"accuracy": round(float((p == labels[k]).mean()), 4),
                      "agreement": round(float((p == ref[k]).mean()), 4),
                      "window_agreement": round(float((win.argmax(1) == ref_win.argmax(1)).mean()), 4),
                      "probability_error": round(float(np.mean(clip_err)), 4)}
        results["routes"][name] = row
        print(name, json.dumps(row), flush=True)
        path.unlink()
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
