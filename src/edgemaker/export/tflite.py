"""TFLite export: the stitched classifier converted with litert-torch, quantized with
ai-edge-quantizer (full int8: int8 weights, activations, input and output), evaluated with the
LiteRT interpreter. Heavy packages, imported lazily (`pip install 'edgemaker[tflite]'`).

Labels and the input recipe travel inside the file as associated files: a zip archive appended to
the flatbuffer (the mechanism TFLite model metadata uses), so `zipfile` reads them and interpreters
ignore them. A small JSON beside the file repeats the input's scale and zero point.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, write_json
from ..errors import EdgemakerError, MissingDependencyError
from .base import Exporter, FloatModel, file_input
from .quantization import Quantization
from .model_file import ModelFile

METADATA_NAME = "edgemaker.json"
LABELS_NAME = "labels.txt"


@contextlib.contextmanager
def quiet_native_logs(show_on_error: bool = True) -> Iterator[None]:
    """The converter, quantizer and interpreter print progress, and their C++ code logs straight to
    file descriptors 1 and 2; keep the console for our own lines. What they said is shown if they
    fail (unless the caller turns the failure into its own one-line error)."""
    import sys
    import tempfile

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    out, err = io.StringIO(), io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as native:
        os.dup2(native.fileno(), 1)
        os.dup2(native.fileno(), 2)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                yield
        except BaseException:
            native.seek(0)
            said = native.read().decode(errors="replace") + out.getvalue() + err.getvalue()
            if said.strip() and show_on_error:
                os.write(saved[1], said[-4000:].encode())
            raise
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            root.setLevel(level)


def require_tflite() -> None:
    for module, package in (("litert_torch", "litert-torch"), ("ai_edge_quantizer", "ai-edge-quantizer"),
                            ("ai_edge_litert", "ai-edge-litert")):
        try:
            with quiet_native_logs(show_on_error=False):  # importing them prints native warnings
                __import__(module)
        except ImportError:
            raise MissingDependencyError(package, "tflite", "TFLite export") from None


def torch_classifier(model: FloatModel, frontend: bool = True):
    """(module, example input) for the whole classifier, float32 in and probabilities out.

    Images: float NHWC pixels in 0..255 (normalised inside). Sounds: a float32 waveform window with
    the log-mel front end in float32 (TFLite has no float64), or the log-mel patch when `frontend`
    is False.
    """
    import torch

    from ..backbones import get_builder
    from ..backbones.weights import resolve_weights

    spec = model.spec
    body = get_builder(spec.name)(spec, resolve_weights(spec.weights))
    if spec.image is not None:
        mean = torch.tensor(spec.image.mean, dtype=torch.float32).view(1, 3, 1, 1)
        inv_std = 1.0 / torch.tensor(spec.image.std, dtype=torch.float32).view(1, 3, 1, 1)
        example = torch.rand(1, spec.image.size, spec.image.size, 3) * 255

        def prepare(x):
            return (x.permute(0, 3, 1, 2) - mean) * inv_std
    else:
        from ..backbones.audio_backbones import FRONTENDS

        fe = FRONTENDS[spec.name]
        if frontend:
            body.frontend = fe.torch_module(double_precision=False)
            example = torch.randn(1, spec.audio.window_samples) * 0.1
        else:
            body = body.network
            example = torch.from_numpy(fe.compute(np.random.default_rng(0).normal(0, 0.1, spec.audio.window_samples)))[None]

        def prepare(x):
            return x
    flip = model.flip_average and spec.image is not None
    dense = torch.nn.Linear(model.coef.shape[1], model.coef.shape[0])
    with torch.no_grad():
        dense.weight.copy_(torch.from_numpy(np.asarray(model.coef, np.float32)))
        dense.bias.copy_(torch.from_numpy(np.asarray(model.intercept, np.float32)))

    from ..backbones.equalise import equalise_into_head

    # A plain-ReLU trunk (YAMNet) shares its range with the head: the int8 head keeps every column. The
    # head's input is then the embedding divided by `embedding_scale`, and the trunk fits this head only.
    scale = equalise_into_head(body, dense)

    class Classifier(torch.nn.Module):
        embedding_scale = None if scale is None else [float(v) for v in scale]

        def __init__(self) -> None:
            super().__init__()
            self.body, self.head = body, dense

        def forward(self, x):
            if flip:  # the batch and its mirror (NHWC: width is dim 2) as one batch; each image's two rows averaged
                both = torch.softmax(self.head(self.body(prepare(torch.cat([x, torch.flip(x, dims=[2])])))), dim=-1)
                return both.reshape(2, -1, both.shape[-1]).mean(0)
            return torch.softmax(self.head(self.body(prepare(x))), dim=-1)

    return Classifier().eval(), example


def convert(module, example, target: Path) -> Path:
    require_tflite()
    import torch

    with quiet_native_logs(), torch.no_grad(), atomic_path(target, suffix=".tflite") as tmp:
        import litert_torch  # its import prints native warnings too

        litert_torch.convert(module, (example,)).export(str(tmp))
    return target


def _signature(path: Path) -> tuple[str, str]:
    from ai_edge_litert.interpreter import Interpreter

    sigs = Interpreter(model_path=str(path)).get_signature_list()
    name = next(iter(sigs))
    return name, sigs[name]["inputs"][0]


def quantize(fp32: Path, target: Path, quantization: Quantization, calibration: Sequence[np.ndarray]) -> Path:
    """int8 (static, calibrated), dynamic (int8 weights) or float16 (fp16 weights) from the fp32 file."""
    require_tflite()
    from ai_edge_quantizer import Quantizer, recipe

    recipes = {"int8": recipe.static_wi8_ai8, "dynamic": recipe.dynamic_wi8_afp32}
    with quiet_native_logs(), atomic_path(target, suffix=".tflite") as tmp:
        if quantization.kind == "float16":
            _float16_weights(fp32, tmp)
            return target
        quantizer = Quantizer(str(fp32), recipes[quantization.kind]())
        result = None
        if quantizer.need_calibration:
            name, input_name = _signature(fp32)
            data = [{input_name: x.astype(np.float32)[None]} for x in calibration]
            if not data:
                raise EdgemakerError("int8 TFLite export needs calibration samples (training data)")
            result = _calibrate(fp32, quantizer, {name: data}, quantization.ranges)
        with warnings.catch_warnings():
            # EfficientNet-Lite has conv channels whose folded weights are ~0 (weight scale ~1e-11) but whose
            # bias is not: bias / (input scale x weight scale) overflows int32, and numpy warns when the
            # quantizer casts the clipped value (+2^31 does not fit: it wraps to -2^31). Those channels'
            # biases are lost either way (the quantizer fixes bias scales); the wrap changes no prediction
            # (tests/test_tflite.py::test_the_quantizer_cast_warning_changes_no_prediction).
            warnings.filterwarnings("ignore", "invalid value encountered in cast", RuntimeWarning,
                                    r"ai_edge_quantizer\.")
            quantizer.quantize(result).export_model(str(tmp), overwrite=True)
    return target


def _calibrate(fp32: Path, quantizer, data: dict, ranges: str) -> dict:
    """Per-tensor ranges over the calibration samples, combined as `ranges` says ("minmax" or
    "mean", as for ONNX). The quantizer's own default is an exponential moving average that mostly
    remembers the last ~20 samples, so the result would depend on the order of the training files."""
    from ai_edge_quantizer import calibrator

    def update(old: dict, new: dict) -> dict:
        if ranges == "minmax":
            return {"min": np.minimum(old["min"], new["min"]), "max": np.maximum(old["max"], new["max"])}
        n = old.get("samples", 1)
        return {"min": (old["min"] * n + new["min"]) / (n + 1), "max": (old["max"] * n + new["max"]) / (n + 1),
                "samples": n + 1}

    calib = calibrator.Calibrator(fp32.read_bytes(), num_threads=os.cpu_count() or 1, qsv_update_func=update)
    calib.calibrate(data, quantizer._recipe_manager)  # what Quantizer.calibrate does, with our update rule
    qsvs = {name: {k: v for k, v in qsv.items() if k != "samples"} for name, qsv in calib.get_model_qsvs().items()}
    if ranges == "mean":
        # The mean rule keeps one loud sample from coarsening the grid of every inner tensor, but the
        # graph's input is data: a value clipped there is lost before the network sees it. ESC-10's
        # log-mel spans -6.9 (the log offset's floor) to about 4.7; averaged ranges gave -4.8 to 3.0 and
        # clipped up to 37% of a quiet clip's input. So the input keeps the extremes of the samples,
        # as Google's own int8 YAMNet quantizes its log-mel input (-6.9 to 5.3).
        (samples,) = data.values()
        (input_name,) = samples[0].keys()
        tensor = _input_tensor(fp32)
        if tensor in qsvs:
            values = [s[input_name] for s in samples]
            qsvs[tensor] = {"min": np.full_like(qsvs[tensor]["min"], min(float(v.min()) for v in values)),
                            "max": np.full_like(qsvs[tensor]["max"], max(float(v.max()) for v in values))}
    return qsvs


def _input_tensor(path: Path) -> str:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path)).get_input_details()[0]["name"]


def _float16_weights(fp32: Path, target: Path) -> None:
    """Store float weights as float16 with DEQUANTIZE ops in front (TFLite's float16 quantization)."""
    from ai_edge_quantizer import Quantizer
    from ai_edge_quantizer.recipe import AlgorithmName, TFLOperationName
    from ai_edge_quantizer.recipe_manager import RecipeManager

    manager = RecipeManager()
    manager.add_weight_only_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, num_bits=16,
                                   algorithm_key=AlgorithmName.FLOAT_CASTING)
    quantizer = Quantizer(str(fp32), manager.get_quantization_recipe())
    quantizer.quantize().export_model(str(target), overwrite=True)


def embed_metadata(path: Path, metadata: dict) -> None:
    """Append labels.txt and edgemaker.json as a zip (associated files), atomically."""
    data = path.read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(LABELS_NAME, "\n".join(metadata["labels"]) + "\n")
        z.writestr(METADATA_NAME, json.dumps(metadata, indent=2))
    with atomic_path(path, suffix=".tflite") as tmp:
        tmp.write_bytes(data + buf.getvalue())


def read_metadata(path: Path) -> dict | None:
    try:
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read(METADATA_NAME))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError):
        return None


def io_quantization(path: Path) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    return {"input": {"dtype": np.dtype(i["dtype"]).name, "shape": [int(d) for d in i["shape"]],
                      "scale": float(i["quantization"][0]), "zero_point": int(i["quantization"][1])},
            "output": {"dtype": np.dtype(o["dtype"]).name, "scale": float(o["quantization"][0]),
                       "zero_point": int(o["quantization"][1])}}


class TFLiteExporter(Exporter):
    """LiteRT files: the torch classifier converted with litert-torch, quantized with ai-edge-quantizer;
    labels and the input recipe inside the file and in a JSON beside it."""

    runtime = "tflite"
    suffix = ".tflite"
    route_id = "input-extremes"  # calibration: the graph input's range is never averaged (see _calibrate)

    def load(self, path: Path, threads: int | None = None):
        return TFLiteModel(path, threads)

    def convert(self, model: FloatModel, frontend: bool, target: Path) -> Path:
        """The converter takes seconds to tens of seconds; its output differs between runs of one
        backbone only in the head's weights. So each (backbone, class count, input) is converted once,
        with a placeholder head, into the cache, and every run patches its own head into a copy."""
        module, example = torch_classifier(model, frontend)
        if module.embedding_scale is not None or not _patch_head(_converted_once(model, frontend), target, model):
            convert(module, example, target)
        _finish(target, with_embedding_scale(model.metadata("none", frontend), module.embedding_scale))
        return target

    def quantize(self, source: Path, target: Path, quantization: Quantization, calibration: Sequence[np.ndarray],
                 metadata: dict) -> Path:
        quantize(source, target, quantization, calibration)
        _finish(target, with_embedding_scale(metadata, (read_metadata(source) or {}).get("embedding_scale")),
                short_names=True)  # a quantized file is deployed, never calibrated on: its names cost flash only
        return target

    def int8_backbone(self, int8_file: Path, metadata: dict, threads: int | None) -> TFLiteInt8Backbone:
        return TFLiteInt8Backbone(int8_file, metadata, threads)

    def int8_with_head(self, model: FloatModel, frontend: bool, float_file: Path, int8_file: Path, target: Path,
                       quantization: Quantization, calibration: Sequence[np.ndarray], metadata: dict) -> Path:
        """The head is int8 too here, so the file is quantized again from a float file with the new
        head: the float file's head weights are patched in place when they can be found exactly once
        (same shapes, same bytes elsewhere), else the classifier is converted again."""
        source = target.with_name(f".{target.stem}-source.tflite")
        try:
            module, example = torch_classifier(model, frontend)
            if module.embedding_scale is not None or not _patch_head(float_file, source, model):
                convert(module, example, source)
                embed_metadata(source, with_embedding_scale(metadata, module.embedding_scale))
            return self.quantize(source, target, quantization, calibration, metadata)
        finally:
            self.remove(source)

    def replace(self, source: Path, target: Path) -> None:
        source.replace(target)
        beside = source.with_name(source.name + ".json")
        if beside.is_file():
            beside.replace(target.with_name(target.name + ".json"))

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".json").unlink(missing_ok=True)


def with_embedding_scale(metadata: dict, scale: list[float] | None) -> dict:
    """The metadata, with the per-channel factor the head's input was divided by (when it was)."""
    return metadata if scale is None else {**metadata, "embedding_scale": scale}


def _converted_once(model: FloatModel, frontend: bool) -> Path:
    """The cached float .tflite of `model`'s backbone with a seeded random head of its shape."""
    from ..paths import cache_dir

    k = len(model.classes)
    path = (model.graph_root or cache_dir()) / "backbones" / (
        f"{model.spec.cache_id}-k{k}{'' if frontend else '-nofrontend'}{'-flip' if model.flip_average else ''}"
        "-litert.tflite")
    if not path.is_file():
        rng = np.random.default_rng(k)
        placeholder = FloatModel(model.spec, rng.normal(0, 0.01, model.coef.shape).astype(np.float32),
                                 rng.normal(0, 0.01, model.intercept.shape).astype(np.float32), model.classes,
                                 flip_average=model.flip_average)
        convert(*torch_classifier(placeholder, frontend), path)
    return path


def _head_op(it) -> dict:
    """The classifier's dense layer: the last FULLY_CONNECTED operator in execution order."""
    return [op for op in it._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"][-1]


def _patch_head(float_file: Path, target: Path, model: FloatModel) -> bool:
    """Write `float_file` with its dense head weights and bias replaced by `model`'s; False when the
    old weights cannot be located unambiguously in the flatbuffer."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(float_file))
    op = _head_op(it)
    data = bytearray(float_file.read_bytes())
    for index, new in zip(op["inputs"][1:3], (model.coef, model.intercept)):
        old = it.get_tensor(int(index))
        new = np.ascontiguousarray(np.asarray(new, np.float32).reshape(old.shape))
        if old.dtype != np.float32:
            return False
        raw = old.tobytes()
        at = data.find(raw)
        if at < 0 or data.find(raw, at + 1) >= 0:
            return False
        data[at : at + len(raw)] = new.tobytes()
    with atomic_path(target, suffix=".tflite") as tmp:
        tmp.write_bytes(bytes(data))
    return True


class TFLiteInt8Backbone:
    """The int8 backbone inside a full-int8 .tflite: the head's (int8) input read back after each
    inference and dequantized; fed like the float backbone (uint8 images, or waveform windows)."""

    def __init__(self, path: Path, metadata: dict, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self._meta = metadata
        with quiet_native_logs():  # without the default delegate, so that intermediate tensors are kept and readable
            self._it = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count() or 1,
                                   experimental_preserve_all_tensors=True,
                                   experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            self._it.allocate_tensors()
        self._in = self._it.get_input_details()[0]
        self._out = self._it.get_output_details()[0]
        embedding = int(_head_op(self._it)["inputs"][0])
        self._embedding = next(t for t in self._it.get_tensor_details() if t["index"] == embedding)
        # the head's input back in the float backbone's units (a head equalised into its trunk reads it rescaled)
        scale = (read_metadata(path) or {}).get("embedding_scale")
        self._rescale = None if scale is None else np.asarray(scale, np.float32)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        x = file_input(batch, self._meta).astype(np.float32)
        scale, zero = self._embedding["quantization"]
        rows = []
        for row in x:
            invoke_model(self._it, self._in, self._out, row[None])
            e = self._it.get_tensor(self._embedding["index"]).astype(np.float32)
            e = e.reshape(-1, e.shape[-1])[0]  # flip averaging: the unmirrored row
            rows.append((e - zero) * scale if scale else e)
        return np.stack(rows) if self._rescale is None else np.stack(rows) * self._rescale


def _finish(path: Path, metadata: dict, short_names: bool = False) -> None:
    from .flatbuffer import inline_buffers

    inline_buffers(path, short_names)  # weights inside the flatbuffer: TFLite Micro misreads offset buffers
    quant = io_quantization(path)
    metadata = {**metadata, "tflite": quant}
    metadata["input"] = {**metadata["input"], "tflite_dtype": quant["input"]["dtype"],
                         "scale": quant["input"]["scale"], "zero_point": quant["input"]["zero_point"]}
    if metadata["input"]["kind"] == "image":
        metadata["input"]["tflite_values"] = "float pixels 0..255" if quant["input"]["dtype"] == "float32" else \
            "int8: round(pixel / scale) + zero_point"
    embed_metadata(path, metadata)
    write_json(path.with_name(path.name + ".json"), metadata)


class TFLiteModel(ModelFile):
    """A .tflite classifier run by the LiteRT interpreter; the same interface as ExportedModel."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        require_tflite()
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        if not self.path.is_file():
            raise EdgemakerError(f"{self.path}: model file not found")
        beside = self.path.with_name(self.path.name + ".json")
        meta = read_metadata(self.path)
        if meta is None and beside.is_file():
            meta = json.loads(beside.read_text())
        if meta is None:
            raise EdgemakerError(f"{self.path}: not an edgemaker model (no {METADATA_NAME} inside nor beside it)")
        self.metadata = meta
        self.labels = self._labels_from(meta, self.path.with_name(LABELS_NAME))
        self.input = meta["input"]
        try:
            with quiet_native_logs(show_on_error=False):
                self._it = Interpreter(model_path=str(self.path), num_threads=threads or os.cpu_count() or 1)
                self._it.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise EdgemakerError(f"{self.path}: the TFLite interpreter cannot load it ({str(exc).splitlines()[0]})") from None
        self._in = self._it.get_input_details()[0]
        self._out = self._it.get_output_details()[0]
        self._shape = tuple(int(d) for d in self._in["shape"])

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        return np.stack([invoke_model(self._it, self._in, self._out, x.reshape(self._shape)) for x in batch]).astype(np.float64)

    def _example(self) -> np.ndarray:
        return np.zeros(self._shape, np.float32)


def invoke_model(it, inp: dict, out: dict, x: np.ndarray) -> np.ndarray:
    """One float input through an interpreter, quantizing the input and dequantizing the output
    as the file's own scale and zero point say (a no-op for float files)."""
    if np.issubdtype(inp["dtype"], np.floating):
        q = x.astype(inp["dtype"])
    else:
        scale, zero = inp["quantization"]
        info = np.iinfo(inp["dtype"])
        q = np.clip(np.round(x.astype(np.float32) / scale) + zero, info.min, info.max).astype(inp["dtype"])
    it.set_tensor(inp["index"], q)
    it.invoke()
    y = it.get_tensor(out["index"])[0]
    if not np.issubdtype(y.dtype, np.floating):
        scale, zero = out["quantization"]
        y = (y.astype(np.float32) - zero) * scale
    return y.astype(np.float32)
