"""Build the deployable ONNX file: backbone graph + dense softmax head + labels in the metadata."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .. import __version__
from ..atomic import atomic_path
from ..backbones.runtime import OUTPUT_NAME, export_backbone_onnx
from .base import Exporter, FloatModel, file_input
from .metadata import METADATA_KEY, PROBABILITIES
from .quantization import Quantization


def set_metadata(model, metadata: dict) -> None:
    import onnx

    del model.metadata_props[:]
    for key, value in ((METADATA_KEY, json.dumps(metadata)), ("labels", "\n".join(metadata["labels"]))):
        onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, key: value})
    model.producer_name = "edgemaker"
    model.producer_version = __version__


def stitch(backbone_onnx: Path, coef: np.ndarray, intercept: np.ndarray, metadata: dict, flip_average: bool = False):
    """Append Gemm + Softmax to the backbone's (N, dim) embedding output. `flip_average` (images): the
    batch and its horizontal mirror run as one batch of 2N, and each image's two probability rows are
    averaged."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(backbone_onnx))
    graph = model.graph
    n_classes = coef.shape[0]
    graph.initializer.extend([
        numpy_helper.from_array(np.ascontiguousarray(coef, np.float32), "head_weight"),
        numpy_helper.from_array(np.ascontiguousarray(intercept, np.float32), "head_bias"),
    ])
    softmax_out = "head_both_views" if flip_average else PROBABILITIES
    graph.node.extend([
        helper.make_node("Gemm", [OUTPUT_NAME, "head_weight", "head_bias"], ["logits"], transB=1, name="head_dense"),
        helper.make_node("Softmax", ["logits"], [softmax_out], axis=-1, name="head_softmax"),
    ])
    if flip_average:
        _flip_average(graph, n_classes)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, ["batch", n_classes]))
    graph.name = "edgemaker_classifier"
    set_metadata(model, metadata)
    onnx.checker.check_model(model)
    return model


def _flip_average(graph, n_classes: int) -> None:
    """Input (N, H, W, C) -> concat(input, input mirrored along W) into the backbone; the head's
    (2N, classes) softmax -> reshape (2, N, classes) -> mean over the two views."""
    from onnx import helper, numpy_helper

    source = graph.input[0].name
    for node in graph.node:
        node.input[:] = ["tta_batch" if name == source else name for name in node.input]
    graph.initializer.extend([numpy_helper.from_array(np.array(v, np.int64), name) for name, v in (
        ("tta_starts", [-1]), ("tta_ends", [-(2**62)]), ("tta_axes", [2]), ("tta_steps", [-1]),
        ("tta_shape", [2, -1, n_classes]))])
    graph.node.insert(0, helper.make_node("Slice", [source, "tta_starts", "tta_ends", "tta_axes", "tta_steps"],
                                          ["tta_mirror"], name="tta_mirror"))
    graph.node.insert(1, helper.make_node("Concat", [source, "tta_mirror"], ["tta_batch"], axis=0, name="tta_concat"))
    graph.node.extend([
        helper.make_node("Reshape", ["head_both_views", "tta_shape"], ["head_views"], name="head_views"),
        helper.make_node("ReduceMean", ["head_views"], [PROBABILITIES], axes=[0], keepdims=0, name="head_flip_mean"),
    ])


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


def _float_nodes(model_path: Path, keep_float: Sequence[str] = ()) -> list[str]:
    """Nodes kept in float: the classifier head (uint8 probabilities would be too coarse), an audio
    front end (an int8 STFT would lose the quiet sounds), and the route's `keep_float` layers
    ("first_conv", "last_conv": the first / last Conv of the backbone)."""
    import onnx

    nodes = onnx.load(str(model_path)).graph.node
    names = [n.name for n in nodes if n.name.startswith(("head_", "/frontend/"))]
    convs = [n.name for n in nodes if n.op_type == "Conv"]
    for layer in keep_float:
        if convs:
            names.append(convs[0] if layer == "first_conv" else convs[-1])
    return names


# Ops that only cast, normalise, move or pad a tensor: the int8 part of the graph may start after them.
_MOVES = ("Pad", "Reshape", "Transpose", "Unsqueeze", "Squeeze", "Flatten", "Identity", "Cast", "Sub", "Mul", "Div",
          "Add")


def _entry_tensors(model) -> list[str]:
    """Where the data enters the int8 network: each front-end output (nodes named /frontend/, kept in
    float) that the network reads, or the graph's input when there is no front end, followed through
    the ops that only cast, normalise, move or pad it up to the first Conv. ONNX Runtime starts the
    int8 part somewhere on that chain (images: after the mean is subtracted; sounds: after the pad)."""
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for t in node.input:
            consumers.setdefault(t, []).append(node)
    frontend = {t for n in model.graph.node if n.name.startswith("/frontend/") for t in n.output}
    start = [t for t in frontend if any(not c.name.startswith("/frontend/") for c in consumers.get(t, []))]
    entries, todo = [], start or [model.graph.input[0].name]
    while todo:
        t = todo.pop()
        entries.append(t)
        for node in consumers.get(t, []):
            if not node.name.startswith("/frontend/") and node.op_type in _MOVES and node.input[0] == t:
                todo.extend(node.output[:1])
    return entries


def _entry_extremes(prepared: Path, input_name: str, calibration: Sequence[np.ndarray],
                    cache: Path | None = None) -> dict:
    """TensorQuantOverrides that give each entry tensor (`_entry_tensors`) the extremes it takes over
    the calibration inputs. Why: with ranges averaged over the samples (sounds), the log-mel entering
    the network got -4.8 to 3.0 on ESC-10 where it spans -6.9 to about 4.7, clipping up to a third of
    a quiet clip's values before the first layer; inside the network the mean rule stays.

    Only the nodes the entry tensors depend on run (the front end, not the network), and with `cache`
    (a JSON file beside the calibration ranges) the extremes are measured once for every variant."""
    import onnx

    from ..backbones.runtime import make_session

    if cache is not None and cache.is_file():
        extremes = json.loads(cache.read_text())
    else:
        model = onnx.load(str(prepared))
        entries = _entry_tensors(model)
        _keep_only_what_computes(model, entries)
        session = make_session(model.SerializeToString(), None)
        lo = {t: np.inf for t in entries}
        hi = {t: -np.inf for t in entries}
        for i in range(0, len(calibration), 16):
            values = session.run(entries, {input_name: np.stack(calibration[i : i + 16])})
            for t, v in zip(entries, values):
                lo[t], hi[t] = min(lo[t], float(v.min())), max(hi[t], float(v.max()))
        extremes = {t: [lo[t], hi[t]] for t in entries}
        if cache is not None:
            cache.write_text(json.dumps(extremes))
    return {t: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}] for t, (lo, hi) in extremes.items()}


def _keep_only_what_computes(model, outputs: list[str]) -> None:
    """Cut `model` in place down to the nodes and initializers that `outputs` depend on, which become
    its outputs."""
    import onnx

    graph = model.graph
    needed, keep = set(outputs), set()
    for i in reversed(range(len(graph.node))):
        if needed.intersection(graph.node[i].output):
            keep.add(i)
            needed.update(graph.node[i].input)
    kept = [n for i, n in enumerate(graph.node) if i in keep]
    del graph.node[:]
    graph.node.extend(kept)
    initializers = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.output[:]
    graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in outputs)


# How int8 ONNX files are quantized, chosen by measurement (docs/benchmarks.md, "Int8").
# ONNX Runtime's u8 x s8 kernels on x86 CPUs without VNNI (AVX2 only) multiply pairs into int16 with
# saturation (VPMADDUBSW): full 8-bit weights overflow there and the file answers differently on such
# a machine than on the one that built it. 7-bit weights (reduce_range) keep every pair sum inside
# int16, so the file computes the same on AVX2, AVX-512/VNNI and ARM alike.
ONNX_INT8_ROUTE = {"format": "QOperator", "activations": "uint8", "weights": "int8", "reduce_range": True,
                   "per_channel": True}

# Variants of that route the int8 flow chooses among on validation (export/int8.py): all int8, or the
# backbone's first convolution kept in float. The first layer sees the raw input (log-mel for sounds)
# whose fine differences a 7-bit weight grid blurs; measured on ESC-10 (docs/benchmarks.md, "Int8"),
# keeping it float brought the one test clip the int8 file lost back, at the same size.
ONNX_ROUTE_VARIANTS = (("all int8", {}), ("first conv in float", {"keep_float": ("first_conv",)}))

_CALIBRATION = {"minmax": lambda q: q.CalibrationMethod.MinMax, "percentile": lambda q: q.CalibrationMethod.Percentile,
                "entropy": lambda q: q.CalibrationMethod.Entropy}


def _reader(batches: list[dict]):
    from onnxruntime import quantization as q

    class Reader(q.CalibrationDataReader):
        """Batches of calibration inputs; `set_range` lets ONNX Runtime read them a chunk at a time."""

        def __init__(self) -> None:
            self.set_range(0, len(batches))

        def __len__(self) -> int:
            return len(batches)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._it = iter(batches[start_index:end_index])

        def get_next(self):
            return next(self._it, None)

    return Reader()


def quantize(fp32_path: Path, target: Path, quantization: Quantization, metadata: dict,
             calibration: Sequence[np.ndarray] = (), route: dict | None = None,
             ranges_cache: Path | None = None) -> Path:
    """Write a quantized copy of the fp32 file; metadata (labels) is carried over. int8 calibrates on
    `calibration`, model inputs prepared exactly as at inference; `route` overrides ONNX_INT8_ROUTE's
    keys (a variant, or an alternative to measure). `ranges_cache`: a JSON file of calibrated ranges,
    written the first time and read instead of calibrating again."""
    import onnx
    from onnxruntime import quantization as q

    unknown = set((route or {}).get("keep_float", ())) - {"first_conv", "last_conv"}
    if unknown:
        raise ValueError(f"unknown layer to keep in float: {min(unknown)!r} (first_conv or last_conv)")
    with atomic_path(target, suffix=".onnx") as tmp, _quiet_root_logger():
        if quantization.kind == "int8":
            if not len(calibration):
                raise ValueError("int8 quantization needs calibration inputs")
            route = {**ONNX_INT8_ROUTE, **(route or {})}
            method = route.get("calibration", "minmax")
            name = metadata["input"]["name"]
            # The extremes over all samples do not depend on how they are batched, so min/max
            # calibration runs 16 at a time; "mean" averages per-batch ranges, so one sample a batch.
            # Histogram methods read the batches a chunk at a time (all activations at once would not fit).
            step = 16 if quantization.ranges == "minmax" or method != "minmax" else 1
            batches = [{name: np.stack(calibration[i : i + step])} for i in range(0, len(calibration), step)]
            reader = _reader(batches)
            extra = {"CalibMovingAverage": method == "minmax" and quantization.ranges == "mean"}
            if method != "minmax":
                extra.update({"CalibTensorRangeSymmetric": False, "CalibStridedMinMax": 1})
                if method == "percentile":
                    extra["CalibPercentile"] = route.get("percentile", 99.999)
            # Shape inference + graph optimisation first, as ONNX Runtime recommends for static int8.
            prepared = tmp.with_name(tmp.name + ".pre.onnx")
            try:
                q.shape_inference.quant_pre_process(str(fp32_path), str(prepared))
                if method == "minmax" and quantization.ranges == "mean":
                    entry_cache = ranges_cache.with_name(ranges_cache.stem + ".entry.json") if ranges_cache else None
                    extra["TensorQuantOverrides"] = _entry_extremes(prepared, name, calibration, entry_cache)
                q.quantize_static(
                    str(prepared), str(tmp), reader,
                    quant_format=q.QuantFormat.QOperator if route["format"] == "QOperator" else q.QuantFormat.QDQ,
                    per_channel=quantization.per_channel and route["per_channel"],
                    reduce_range=route["reduce_range"],
                    activation_type=q.QuantType.QUInt8 if route["activations"] == "uint8" else q.QuantType.QInt8,
                    weight_type=q.QuantType.QInt8 if route["weights"] == "int8" else q.QuantType.QUInt8,
                    calibrate_method=_CALIBRATION[method](q),
                    # ONNX Runtime's "moving average" is the mean of the per-sample ranges (one sample a batch).
                    extra_options=extra,
                    nodes_to_exclude=_float_nodes(prepared, route.get("keep_float", ())),
                    calibration_cache_path=ranges_cache,
                )
            finally:
                prepared.unlink(missing_ok=True)
            metadata = {**metadata, "int8_route": route}
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


def _head_input(model) -> str:
    """The tensor the float head reads: the (dequantized) embedding of the int8 backbone."""
    return next(n for n in model.graph.node if n.name == "head_dense").input[0]


class OnnxInt8Backbone:
    """The int8 backbone inside a quantized ONNX file: the head's input exposed as an extra output."""

    def __init__(self, int8_file: Path, metadata: dict, threads: int | None = None) -> None:
        import onnx

        from ..backbones.runtime import make_session

        model = onnx.load(str(int8_file))
        self._output = _head_input(model)
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(self._output))
        self._session = make_session(model.SerializeToString(), threads)
        self._meta = metadata

    def embed(self, batch: np.ndarray) -> np.ndarray:
        batch = file_input(batch, self._meta)
        out = self._session.run([self._output], {self._meta["input"]["name"]: np.ascontiguousarray(batch)})[0]
        return out.reshape(-1, out.shape[-1])[: len(batch)].astype(np.float32)  # flip averaging: the unmirrored half


class OnnxExporter(Exporter):
    """ONNX Runtime files: the cached backbone graph with Gemm + Softmax appended."""

    runtime = "onnx"
    suffix = ".onnx"
    route_id = repr(sorted(ONNX_INT8_ROUTE.items())) + "|entry-extremes"  # the calibration of int8 files changed
    int8_routes = ONNX_ROUTE_VARIANTS

    def load(self, path: Path, threads: int | None = None):
        from .runtime import ExportedModel

        return ExportedModel(path, threads)

    def __init__(self) -> None:
        self._ranges: tempfile.TemporaryDirectory | None = None  # calibration ranges, shared by the variants

    def quantize_route(self, route: dict, source: Path, target: Path, quantization: Quantization,
                       calibration: Sequence[np.ndarray], metadata: dict) -> Path:
        """Variants that calibrate alike share one calibration pass: ONNX Runtime's ranges are kept
        (in a temporary folder that lives as long as this exporter) for the same inputs and settings."""
        if self._ranges is None:
            self._ranges = tempfile.TemporaryDirectory(prefix="edgemaker-ranges-")
        key = hashlib.sha256(repr((id(calibration), len(calibration), str(source), quantization.ranges,
                                   route.get("calibration", "minmax"), route.get("percentile"))).encode())
        ranges = Path(self._ranges.name) / f"{key.hexdigest()[:16]}.json"
        return quantize(source, target, quantization, metadata, calibration, route, ranges)

    def convert(self, model: FloatModel, frontend: bool, target: Path) -> Path:
        graph = export_backbone_onnx(model.spec, model.graph_root, frontend)
        return save_model(stitch(graph, model.coef, model.intercept, model.metadata("none", frontend),
                                 model.flip_average and model.spec.image is not None), target)

    def quantize(self, source: Path, target: Path, quantization: Quantization, calibration: Sequence[np.ndarray],
                 metadata: dict) -> Path:
        return quantize(source, target, quantization, metadata, calibration)

    def int8_backbone(self, int8_file: Path, metadata: dict, threads: int | None) -> OnnxInt8Backbone:
        return OnnxInt8Backbone(int8_file, metadata, threads)

    def int8_with_head(self, model: FloatModel, frontend: bool, float_file: Path, int8_file: Path, target: Path,
                       quantization: Quantization, calibration: Sequence[np.ndarray], metadata: dict) -> Path:
        """The head stays float in int8 ONNX files, so the same int8 backbone takes the new head as is:
        only the two head initializers change, no second quantization."""
        import onnx
        from onnx import numpy_helper

        int8 = onnx.load(str(int8_file))
        new = {"head_weight": model.coef, "head_bias": model.intercept}
        for init in int8.graph.initializer:
            if init.name in new:
                init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(new.pop(init.name), np.float32), init.name))
        if new:
            raise ValueError(f"{int8_file}: head initializers {sorted(new)} not found")
        route = json.loads(next(p.value for p in int8.metadata_props if p.key == METADATA_KEY)).get("int8_route")
        set_metadata(int8, {**metadata, "quantization": quantization.kind, "int8_route": route or ONNX_INT8_ROUTE})
        return save_model(int8, target)

