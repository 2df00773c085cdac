"""Which ONNX int8 route holds on every CPU? Quantize one float model several ways and run each file
on this CPU and, where `qemu-x86_64` is installed, on an emulated Haswell (AVX2, no VNNI: the CPUs
where ONNX Runtime's u8 x s8 kernels saturate).

    python bench/int8_routes.py DATA [--limit 120] [--out bench-int8-routes.json]

Prints test accuracy and agreement with the fp32 file for each route and CPU. Emulation is slow
(about a second an image), so `--limit` caps the test files run there.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROUTES = {
    "u8s8 (old default)": {"format": "QOperator", "activations": "uint8", "weights": "int8", "reduce_range": False,
                           "per_channel": True},
    "u8s8 reduce_range (default)": {"format": "QOperator", "activations": "uint8", "weights": "int8",
                                    "reduce_range": True, "per_channel": True},
    "u8u8": {"format": "QOperator", "activations": "uint8", "weights": "uint8", "reduce_range": False,
             "per_channel": True},
    "qdq s8s8": {"format": "QDQ", "activations": "int8", "weights": "int8", "reduce_range": False, "per_channel": True},
}

# Runs under emulation: numpy and onnxruntime only.
RUNNER = """
import sys, numpy as np, onnxruntime as ort
o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.log_severity_level = 3
s = ort.InferenceSession(sys.argv[1], o, providers=["CPUExecutionProvider"])
x = np.load(sys.argv[2], allow_pickle=False)
out = [s.run(["probabilities"], {s.get_inputs()[0].name: x[i:i + 1]})[0][0] for i in range(len(x))]
np.save(sys.argv[3], np.stack(out))
"""


def run(model: Path, inputs: Path, out: Path, emulate: bool) -> np.ndarray:
    cmd = [sys.executable, "-c", RUNNER, str(model), str(inputs), str(out)]
    if emulate:
        cmd = ["qemu-x86_64", "-cpu", "Haswell", *cmd]
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    return np.load(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("--limit", type=int, default=120)
    ap.add_argument("--out", type=Path, default=Path("bench-int8-routes.json"))
    args = ap.parse_args()

    from edgemaker.data.splits import SplitOptions, make_splits
    from edgemaker.data.validate import validate_folder
    from edgemaker.export.exporters import exporter_for
    from edgemaker.export.onnx_model import quantize
    from edgemaker.export.stage import quantization_for
    from edgemaker.tasks.classifier import classifier_for

    report = validate_folder(args.data)
    splits = make_splits(report, SplitOptions())
    clf = classifier_for(report.modality).create(splits.train, splits.val)
    tmp = Path(tempfile.mkdtemp(prefix="int8-routes-"))
    session = clf.export_session(tmp)
    fp32 = session.float_file(exporter_for("onnx"))
    meta = clf.metadata("int8")
    q = quantization_for("onnx-int8", [s.path for s in splits.train], report.modality)
    calibration = session.inputs.calibration(q, clf.metadata())
    test = splits.test[: args.limit] if report.modality == "image" else splits.test
    windows = session.inputs.files([s.path for s in test], meta)
    owner = np.concatenate([np.full(len(w), i) for i, w in enumerate(windows)])
    x = tmp / "inputs.npy"
    np.save(x, np.concatenate(windows))
    labels = np.array([clf.classes.index(s.label) for s in test])

    def clip_pred(proba: np.ndarray) -> np.ndarray:
        sums = np.zeros((len(test), proba.shape[1]))
        np.add.at(sums, owner, proba)
        return sums.argmax(1)

    cpus = {"this CPU": False}
    if shutil.which("qemu-x86_64"):
        cpus["emulated Haswell (AVX2, no VNNI)"] = True
    results = {"data": str(args.data), "test_files": len(test), "routes": {}}
    reference = {cpu: clip_pred(run(fp32, x, tmp / "fp32.npy", emulate)) for cpu, emulate in cpus.items()}
    for cpu in cpus:
        results.setdefault("fp32", {})[cpu] = round(float((reference[cpu] == labels).mean()), 4)
    for name, route in ROUTES.items():
        path = quantize(fp32, tmp / f"{name.split()[0]}-{len(results['routes'])}.onnx", q, meta, calibration, route)
        row = {"size_bytes": path.stat().st_size}
        for cpu, emulate in cpus.items():
            pred = clip_pred(run(path, x, tmp / "p.npy", emulate))
            row[cpu] = {"accuracy": round(float((pred == labels).mean()), 4),
                        "agreement_with_fp32": round(float((pred == reference[cpu]).mean()), 4)}
        results["routes"][name] = row
        print(name, json.dumps(row), flush=True)
    print(json.dumps(results, indent=2))
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
