"""Where does an int8 ONNX file depart from its float source? Each quantized tensor of the int8 file
(QOperator: `<name>_quantized` with `<name>_scale` / `<name>_zero_point`) is dequantized and compared
with the same tensor of the float file (after its Relu, which the int8 file fuses into the Conv), on
validation inputs, for each route variant.

    python bench/int8_layer_error.py DATA [--windows 48]

Prints, per tensor in graph order, the relative error ||int8 - float|| / ||float|| (mean over inputs).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def outputs(model_path: Path, names: list[str], x: np.ndarray, input_name: str) -> dict[str, np.ndarray]:
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    have = {o.name for o in model.graph.output}
    for name in names:
        if name not in have:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = [session.run(names, {input_name: x[i : i + 8]}) for i in range(0, len(x), 8)]
    return {n: np.concatenate([g[j] for g in got]) for j, n in enumerate(names)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("--windows", type=int, default=48)
    args = ap.parse_args()

    import onnx
    from onnx import numpy_helper

    from edgemaker.data.splits import SplitOptions, make_splits
    from edgemaker.data.validate import validate_folder
    from edgemaker.export.exporters import exporter_for
    from edgemaker.export.onnx_model import ONNX_ROUTE_VARIANTS, quantize
    from edgemaker.export.stage import quantization_for
    from edgemaker.tasks.classifier import classifier_for

    report = validate_folder(args.data)
    splits = make_splits(report, SplitOptions())
    clf = classifier_for(report.modality).create(splits.train, splits.val)
    tmp = Path(tempfile.mkdtemp(prefix="int8-layers-"))
    session = clf.export_session(tmp)
    fp32 = session.float_file(exporter_for("onnx"))
    meta = clf.metadata("int8")
    q = quantization_for("onnx-int8", [s.path for s in splits.train], report.modality)
    calibration = session.inputs.calibration(q, clf.metadata())
    windows = np.concatenate(session.inputs.files([s.path for s in splits.val], meta))
    x = windows[np.linspace(0, len(windows) - 1, min(args.windows, len(windows))).round().astype(int)]
    name = meta["input"]["name"]
    # ONNX Runtime fuses Conv + Relu: the int8 tensor named after the Conv output holds relu(conv).
    relu_after = {n.input[0] for n in onnx.load(str(fp32)).graph.node if n.op_type == "Relu"}
    rows = {}
    for variant, route in ONNX_ROUTE_VARIANTS:
        path = quantize(fp32, tmp / "q.onnx", q, meta, calibration, route)
        graph = onnx.load(str(path)).graph
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        quantized = [o for n in graph.node for o in n.output if o.endswith("_quantized")]
        tensors = [t[: -len("_quantized")] for t in quantized]
        ints = outputs(path, quantized, x, name)
        floats = outputs(fp32, [t for t in tensors] + ["probabilities"], x, name)
        for t, qt in zip(tensors, quantized):
            scale, zero = inits.get(t + "_scale"), inits.get(t + "_zero_point")
            if scale is None or t not in floats:
                continue
            deq = (ints[qt].astype(np.float32) - zero.astype(np.float32)) * scale
            ref = np.maximum(floats[t], 0) if t in relu_after else floats[t]
            err = np.linalg.norm((deq - ref).reshape(len(x), -1), axis=1) / (
                np.linalg.norm(ref.reshape(len(x), -1), axis=1) + 1e-12)
            rows.setdefault(t, {})[variant] = float(err.mean())
        probs = outputs(path, ["probabilities"], x, name)["probabilities"]
        rows.setdefault("probabilities (window top-1 agreement)", {})[variant] = float(
            (probs.argmax(1) == floats["probabilities"].argmax(1)).mean())
    variants = [v for v, _ in ONNX_ROUTE_VARIANTS]
    print("tensor | " + " | ".join(variants))
    for t, r in rows.items():
        print(t, "|", " | ".join(f"{r[v]:.4f}" if v in r else "-" for v in variants))


if __name__ == "__main__":
    main()
