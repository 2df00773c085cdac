"""base_model: the user's own classifier (ONNX or TorchScript) as a trainable starting point.

ONNX becomes a torch.fx graph through onnx2torch (a maintained converter, not an operator table of
ours). onnx2torch imports torchvision only for its NonMaxSuppression and RoiAlign converters, and
torchvision cannot sit beside our CPU torch; without torchvision those two modules are made empty
before onnx2torch loads, so a model using either operator gets the same one-line "cannot convert"
error as any other unsupported operator, and every classification operator still converts.

A run cuts the graph before its last dense layer, retrains the last N layers (tasks/transfer.py)
and saves the trained trunk as an ONNX file (float NCHW (x - mean) / std -> features): that file is
the spec's kind="file" weights, and the builder below converts it back for every export.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import types
from pathlib import Path

from ..errors import EdgemakerError, MissingDependencyError
from .registry import register_backbone
from .spec import BackboneSpec, ImageInput, WeightsSource

NAME = "base_model"
_NEEDS_TORCHVISION = ("nms", "roialign")  # onnx2torch.node_converters modules that import torchvision


def onnx2torch():
    """Import onnx2torch, with its torchvision-only converters left out when torchvision is absent."""
    if "onnx2torch" in sys.modules:
        return sys.modules["onnx2torch"]
    if importlib.util.find_spec("onnx2torch") is None:
        raise MissingDependencyError(
            "--base-model needs onnx2torch: run `pip install --no-deps onnx2torch==1.5.15` "
            "(--no-deps: its torchvision requirement would replace the CPU torch)")
    if importlib.util.find_spec("torchvision") is None:
        for name in _NEEDS_TORCHVISION:
            module = types.ModuleType(f"onnx2torch.node_converters.{name}")
            module.__doc__ = "left out: needs torchvision (see edgemaker.backbones.base_model)"
            module.__all__ = []
            sys.modules.setdefault(module.__name__, module)
    import onnx2torch as o2t

    return o2t


def unsupported_operators(model) -> list[str]:
    """Operators of `model` (an onnx ModelProto) that onnx2torch has no converter for."""
    onnx2torch()
    from onnx2torch.node_converters import get_converter

    opsets = {o.domain or "": o.version for o in model.opset_import}
    missing = []
    for node in model.graph.node:
        domain = node.domain or ""
        try:
            get_converter(node.op_type, opsets.get(domain, opsets.get("", 17)), domain or "")
        except NotImplementedError:
            missing.append(node.op_type if not domain else f"{domain}.{node.op_type}")
    return sorted(set(missing))


def convert(model, source: str):
    """onnx ModelProto -> torch.fx.GraphModule; an operator it cannot convert is named."""
    missing = unsupported_operators(model)
    if missing:
        raise EdgemakerError(f"{source}: operator {', '.join(missing)} cannot be converted to a trainable graph "
                             "(onnx2torch has no converter for it); export the model without it")
    try:
        return onnx2torch().convert(model)
    except NotImplementedError as exc:
        raise EdgemakerError(f"{source}: cannot be converted to a trainable graph ({exc})") from None


def channel_adapter(module, channels: int):
    """Feed a network that takes `channels` (1 or 3) from the pipeline's normalised RGB input:
    a one-channel network gets the channel average."""
    import torch

    class Adapter(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = module
            self.gray = channels == 1

        def forward(self, x):
            return self.net(x.mean(dim=1, keepdim=True) if self.gray else x)

    return Adapter()


def _build(spec: BackboneSpec, weights: Path):
    import onnx

    return convert(onnx.load(str(weights)), str(weights)).eval()


SPEC = BackboneSpec(
    name=NAME,
    modality="image",
    feature_dim=1,  # the trained spec carries the real one
    weights=WeightsSource(
        kind="trained",
        location="base_model: your --base-model file, its last layers retrained by each run",
        sha256=hashlib.sha256(f"{NAME}-v1".encode()).hexdigest(),
    ),
    licence="the licence of your base model",
    parameters=1,
    image=ImageInput(size=224, mean=(127.5,) * 3, std=(127.5,) * 3, crop_padding=0),
    description="your own model (--base-model), last layers retrained",
)

register_backbone(SPEC)(_build)
