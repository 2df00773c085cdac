"""Build the deployable ONNX file: backbone graph + dense softmax head + labels in the metadata."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .. import __version__
from ..atomic import atomic_path
from ..backbones.runtime import INPUT_NAME, OUTPUT_NAME
from ..backbones.spec import BackboneSpec
from .quantization import Quantization

PROBABILITIES = "probabilities"
METADATA_KEY = "edgemaker"


def model_metadata(spec: BackboneSpec, classes: Sequence[str], quantization: str, options=None,
                   frontend: bool = True) -> dict:
    """What a runtime needs besides the graph: labels and how to prepare the input."""
    meta = {
        "edgemaker_version": __version__,
        "task": f"{spec.modality}_classification",
        "labels": list(classes),
        "backbone": spec.name,
        "backbone_licence": spec.licence,
        "quantization": quantization,
        "output": {"name": PROBABILITIES, "meaning": "softmax probabilities in label order"},
    }
    if spec.image is not None:
        image = spec.image
        meta["input"] = {
            "name": INPUT_NAME, "kind": "image", "dtype": "uint8", "layout": "NHWC", "color": "RGB",
            "size": image.size, "mean": list(image.mean), "std": list(image.std),
            "crop_padding": image.crop_padding, "resize": "bicubic",
            "normalisation": "inside the graph: (pixel - mean) / std",
            "crop": "centre crop of size/(size+crop_padding)*min(h,w), then resize to size x size",
        }
        return meta
    audio = spec.audio
    assert audio is not None
    silence = getattr(options, "silence", None)
    meta["input"] = {
        "name": "waveform" if frontend else "logmel",
        "kind": "waveform" if frontend else "logmel",
        "dtype": "float32",
        "sample_rate": audio.sample_rate,
        "window_samples": audio.window_samples,
        "hop_samples": audio.hop_samples,
        "mono": True,
        "range": "[-1, 1]",
        "frontend": audio.frontend + (" (inside the graph)" if frontend else " (computed by the caller)"),
        "silence_threshold_db": silence.threshold_db if silence and silence.enabled else None,
        "clip_result": "mean of the window probabilities",
    }
    return meta


def set_metadata(model, metadata: dict) -> None:
    import onnx

    del model.metadata_props[:]
    for key, value in ((METADATA_KEY, json.dumps(metadata)), ("labels", "\n".join(metadata["labels"]))):
        onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, key: value})
    model.producer_name = "edgemaker"
    model.producer_version = __version__


def stitch(backbone_onnx: Path, coef: np.ndarray, intercept: np.ndarray, metadata: dict):
    """Append Gemm + Softmax to the backbone's (N, dim) embedding output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(backbone_onnx))
    graph = model.graph
    n_classes = coef.shape[0]
    graph.initializer.extend([
        numpy_helper.from_array(np.ascontiguousarray(coef, np.float32), "head_weight"),
        numpy_helper.from_array(np.ascontiguousarray(intercept, np.float32), "head_bias"),
    ])
    graph.node.extend([
        helper.make_node("Gemm", [OUTPUT_NAME, "head_weight", "head_bias"], ["logits"], transB=1, name="head_dense"),
        helper.make_node("Softmax", ["logits"], [PROBABILITIES], axis=-1, name="head_softmax"),
    ])
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, ["batch", n_classes]))
    graph.name = "edgemaker_classifier"
    set_metadata(model, metadata)
    onnx.checker.check_model(model)
    return model


def save_model(model, target: Path) -> Path:
    import onnx

    with atomic_path(target, suffix=".onnx") as tmp:
        onnx.save(model, str(tmp))
    return target


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantizer logs per-tensor warnings on the root logger; keep the console readable."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _float_nodes(model_path: Path) -> list[str]:
    """Nodes kept in float: the classifier head (uint8 probabilities would be too coarse) and an
    audio front end (an int8 STFT would lose the quiet sounds)."""
    import onnx

    names = [n.name for n in onnx.load(str(model_path)).graph.node]
    return [n for n in names if n.startswith(("head_", "/frontend/"))]


def quantize(fp32_path: Path, target: Path, quantization: Quantization, metadata: dict) -> Path:
    """Write a quantized copy of the fp32 file; metadata (labels) is carried over."""
    import onnx
    from onnxruntime import quantization as q

    with atomic_path(target, suffix=".onnx") as tmp, _quiet_root_logger():
        if quantization.kind == "int8":
            from .runtime import calibration_inputs

            name = metadata["input"]["name"]
            inputs = ({name: x[None]} for x in calibration_inputs(quantization, metadata))

            class Reader(q.CalibrationDataReader):
                def get_next(self):
                    return next(inputs, None)

            # Shape inference + graph optimisation first, as ONNX Runtime recommends for static int8.
            prepared = tmp.with_name(tmp.name + ".pre.onnx")
            try:
                q.shape_inference.quant_pre_process(str(fp32_path), str(prepared))
                q.quantize_static(
                    str(prepared), str(tmp), Reader(),
                    quant_format=q.QuantFormat.QOperator,
                    per_channel=quantization.per_channel,
                    activation_type=q.QuantType.QUInt8,
                    weight_type=q.QuantType.QInt8,
                    calibrate_method=q.CalibrationMethod.MinMax,
                    # ONNX Runtime's "moving average" is the mean of the per-sample ranges (one sample a batch).
                    extra_options={"CalibMovingAverage": quantization.ranges == "mean"},
                    nodes_to_exclude=_float_nodes(prepared),
                )
            finally:
                prepared.unlink(missing_ok=True)
        elif quantization.kind == "dynamic":
            q.quantize_dynamic(str(fp32_path), str(tmp), weight_type=q.QuantType.QInt8, per_channel=quantization.per_channel,
                               nodes_to_exclude=_float_nodes(fp32_path))
        elif quantization.kind == "float16":
            from onnxruntime.transformers.float16 import convert_float_to_float16

            half = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
            onnx.save(half, str(tmp))
        else:
            raise ValueError(f"nothing to quantize for {quantization.kind!r}")
        model = onnx.load(str(tmp))
        set_metadata(model, {**metadata, "quantization": quantization.kind})
        onnx.save(model, str(tmp))
    return target
