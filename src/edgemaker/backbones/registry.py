"""One registry of backbones, filled through the same call a third party would use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EdgemakerError
from .spec import BackboneSpec, Modality

if TYPE_CHECKING:  # torch is imported lazily: listing backbones must not load it
    import torch

# A builder turns a spec and its verified weights file into a torch module mapping the
# backbone's input batch to (N, feature_dim) embeddings.
Builder = Callable[[BackboneSpec, Path], "torch.nn.Module"]


@dataclass(frozen=True)
class _Entry:
    spec: BackboneSpec
    build: Builder


_REGISTRY: dict[str, _Entry] = {}
_UNLISTED: set[str] = set()  # registered on demand (truncated backbones): usable by name, not listed


def register_backbone(spec: BackboneSpec) -> Callable[[Builder], Builder]:
    """Register `spec` with the decorated builder. Re-registering a name is an error."""

    def decorate(build: Builder) -> Builder:
        if spec.name in _REGISTRY:
            raise ValueError(f"backbone {spec.name!r} is already registered")
        _REGISTRY[spec.name] = _Entry(spec, build)
        return build

    return decorate


def unregister_backbone(name: str) -> None:
    _REGISTRY.pop(name, None)


def get_spec(name: str) -> BackboneSpec:
    if name not in _REGISTRY:  # a truncated EfficientNet-Lite (efficientnet_lite0_k5) registers on first use
        from .sound_trunks import ensure_registered as ensure_sound
        from .mobilenet_v1 import ensure_registered as ensure_mobilenet_v1
        from .truncated import ensure_registered

        ensure_registered(name) or ensure_sound(name) or ensure_mobilenet_v1(name)
    try:
        return _REGISTRY[name].spec
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise EdgemakerError(f"unknown backbone {name!r}: choose one of {known}") from None


def get_builder(name: str) -> Builder:
    get_spec(name)
    return _REGISTRY[name].build


def list_backbones(modality: Modality | None = None) -> list[BackboneSpec]:
    return [e.spec for e in _REGISTRY.values()
            if (modality is None or e.spec.modality == modality) and e.spec.name not in _UNLISTED]
