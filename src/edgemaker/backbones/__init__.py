"""Backbone registry: frozen specs, one `embed(batch) -> (N, dim)` contract, ONNX Runtime execution."""

from .registry import get_builder, get_spec, list_backbones, register_backbone, unregister_backbone
from .spec import BackboneSpec, ImageInput, WeightsSource

from . import efficientnet_lite  # noqa: E402,F401  (registers the built-in backbones)

DEFAULT_IMAGE_BACKBONE = "efficientnet_lite0"

__all__ = [
    "DEFAULT_IMAGE_BACKBONE",
    "BackboneSpec",
    "ImageInput",
    "WeightsSource",
    "get_builder",
    "get_spec",
    "list_backbones",
    "register_backbone",
    "unregister_backbone",
]
