"""Backbone registry: frozen specs, one `embed(batch) -> (N, dim)` contract, ONNX Runtime execution."""

from .registry import create_spec, get_builder, get_spec, list_backbones, register_backbone, unregister_backbone
from .spec import AudioInput, BackboneSpec, ImageInput, WeightsSource

from . import efficientnet_lite  # noqa: E402,F401  (registers the built-in backbones)
from . import audio_backbones  # noqa: E402,F401
from . import small_cnn  # noqa: E402,F401
from . import small_cnn_mel  # noqa: E402,F401
from . import base_model  # noqa: E402,F401
from . import truncated  # noqa: E402,F401  (cut EfficientNet-Lite trunks, registered by name on first use)
from . import sound_trunks  # noqa: E402,F401  (cut sound trunks, likewise)
from . import mobilenet_v1  # noqa: E402,F401
from . import mobilenet_v2  # noqa: E402,F401

DEFAULT_IMAGE_BACKBONE = "efficientnet_lite0"
# Audio: each is extracted and the head is fitted on each; cross-validation picks one per dataset.
# yamnet's full-int8 TFLite file agrees with its float model (its head equalised into the trunk,
# backbones/equalise.py; esc10-dev9 test: 0.958-0.986 vs 0.972 in float), so it is a candidate like the others.
DEFAULT_AUDIO_BACKBONES = ("aisfx", "efficientnet_lite0_mel", "yamnet")

__all__ = [
    "DEFAULT_AUDIO_BACKBONES",
    "DEFAULT_IMAGE_BACKBONE",
    "AudioInput",
    "BackboneSpec",
    "ImageInput",
    "WeightsSource",
    "create_spec",
    "get_builder",
    "get_spec",
    "list_backbones",
    "register_backbone",
    "unregister_backbone",
]
