"""Run a backbone in ONNX Runtime: exported from PyTorch once per weights hash, then reused."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import EdgemakerError
from ..paths import cache_dir
from .registry import get_builder
from .spec import BackboneSpec
from .weights import resolve_weights

INPUT_NAME = "image"
OUTPUT_NAME = "embedding"
ONNX_OPSET = 17
# Bump when the exported graph changes without changing what it computes (embeddings stay valid).
GRAPH_VERSION = 4


def default_threads() -> int:
    return max(1, os.cpu_count() or 1)


def with_uint8_input(module, image):
    """Prefix the builder's float NCHW network with uint8 NHWC -> (x - mean) / std -> NCHW."""
    import torch

    class UInt8Input(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = module
            self.register_buffer("mean", torch.tensor(image.mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("inv_std", 1.0 / torch.tensor(image.std, dtype=torch.float32).view(1, 3, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x.permute(0, 3, 1, 2).to(torch.float32)
            return self.net((x - self.mean) * self.inv_std)

    return UInt8Input().eval()


def with_graph_input(module, spec: BackboneSpec):
    """(`module` taking the input a device gives the backbone, a dummy batch of one for export):
    images get the uint8 NHWC step, sounds take float waveform windows as they are."""
    import torch

    if spec.image is not None:
        size = spec.image.size
        return with_uint8_input(module, spec.image), torch.zeros(1, size, size, 3, dtype=torch.uint8)
    assert spec.audio is not None
    return module, torch.zeros(1, spec.audio.window_samples)


def input_name(spec: BackboneSpec, frontend: bool = True) -> str:
    if spec.image is not None:
        return INPUT_NAME
    return "waveform" if frontend else "logmel"


def export_backbone_onnx(spec: BackboneSpec, root: Path | None = None, frontend: bool = True) -> Path:
    """Return the cached ONNX graph of `spec`, exporting it from PyTorch the first time.

    Image graphs take uint8 NHWC; audio graphs take float waveform windows and compute their own
    log-mel, or, with `frontend=False`, take the log-mel patch itself (for devices with a DSP front end).
    """
    suffix = "" if frontend else "-nofrontend"
    target = (root or cache_dir()) / "backbones" / f"{spec.cache_id}-g{GRAPH_VERSION}{suffix}.onnx"
    if target.is_file():
        return target
    weights = resolve_weights(spec.weights)
    import torch

    module, dummy = with_graph_input(get_builder(spec.name)(spec, weights), spec)
    if spec.audio is not None and not frontend:
        with torch.no_grad():
            dummy = module.frontend(dummy)
        module = module.network
    name = input_name(spec, frontend)
    with atomic_path(target, suffix=".onnx") as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (dummy,),
            str(tmp),
            input_names=[name],
            output_names=[OUTPUT_NAME],
            dynamic_axes={name: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    return target


def make_session(model: str | Path | bytes, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(
            model if isinstance(model, bytes) else str(model), options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # ORT raises its own exception types for invalid graphs
        name = "model bytes" if isinstance(model, bytes) else str(model)
        raise EdgemakerError(f"{name}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from None


class Backbone:
    """The one contract every backbone meets: `embed(batch) -> (N, feature_dim)` float32."""

    def __init__(self, spec: BackboneSpec, threads: int | None = None, root: Path | None = None) -> None:
        self.spec = spec
        self.onnx_path = export_backbone_onnx(spec, root)
        self.input_name = input_name(spec)
        self._session = make_session(self.onnx_path, threads)

    @classmethod
    def from_onnx(cls, spec: BackboneSpec, model: bytes | Path, threads: int | None = None) -> Backbone:
        """A backbone from its exported graph (e.g. bytes shipped to a worker on another machine)."""
        self = cls.__new__(cls)
        self.spec = spec
        self.onnx_path = model if isinstance(model, Path) else None
        self.input_name = input_name(spec)
        self._session = make_session(model, threads)
        return self

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) images, or float32 (N, window_samples) audio -> (N, feature_dim)."""
        if self.spec.image is not None:
            size = self.spec.image.size
            if batch.ndim != 4 or batch.shape[1:] != (size, size, 3) or batch.dtype != np.uint8:
                raise ValueError(f"{self.spec.name} expects uint8 (N, {size}, {size}, 3), got {batch.dtype} {batch.shape}")
        else:
            assert self.spec.audio is not None
            n = self.spec.audio.window_samples
            if batch.ndim != 2 or batch.shape[1] != n or batch.dtype != np.float32:
                raise ValueError(f"{self.spec.name} expects float32 (N, {n}), got {batch.dtype} {batch.shape}")
        if batch.shape[0] == 0:
            return np.zeros((0, self.spec.feature_dim), np.float32)
        out = self._session.run([OUTPUT_NAME], {self.input_name: np.ascontiguousarray(batch)})[0]
        return out.astype(np.float32, copy=False)


def load_backbone(name_or_spec: str | BackboneSpec, threads: int | None = None) -> Backbone:
    from . import get_spec

    spec = get_spec(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    return Backbone(spec, threads)
