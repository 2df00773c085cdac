"""One registry of backbones, filled through the same call a third party would use.

A leaf: it imports none of its plugins. Families of generated variants (a network cut after block
k, at another input size) register a resolver that registers a variant the first time its name is
asked for, so a name saved in a config.json or a cache works without listing every variant.
"""

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
_RESOLVERS: list[Callable[[str], bool]] = []
_CUTTERS: dict[str, Callable[[int], BackboneSpec]] = {}  # backbone name -> depth -> the cut variant's spec


def register_backbone(spec: BackboneSpec, listed: bool = True) -> Callable[[Builder], Builder]:
    """Register `spec` with the decorated builder. Re-registering a name is an error. `listed=False`:
    usable by name but left out of list_backbones (a generated variant)."""

    def decorate(build: Builder) -> Builder:
        if spec.name in _REGISTRY:
            raise ValueError(f"backbone {spec.name!r} is already registered")
        _REGISTRY[spec.name] = _Entry(spec, build)
        if not listed:
            _UNLISTED.add(spec.name)
        return build

    return decorate


def register_resolver(resolve: Callable[[str], bool]) -> None:
    """`resolve(name)` registers the variant `name` of its family and returns True, else False."""
    if resolve not in _RESOLVERS:
        _RESOLVERS.append(resolve)


def register_cutter(name: str, cut: Callable[[int], BackboneSpec]) -> None:
    """`cut(depth)`: the spec of backbone `name` cut after block `depth` (registered by its family)."""
    _CUTTERS[name] = cut


def is_registered(name: str) -> bool:
    return name in _REGISTRY


def create_spec(name: str, depth: int | None = None, input_size: int | None = None) -> BackboneSpec:
    """A backbone with its variant as parameters, as timm's create_model: `create_spec("efficientnet_lite0",
    depth=5, input_size=96)` is the spec named efficientnet_lite0_k5 at 96 px (the name stays valid)."""
    spec = get_spec(name)
    if depth is not None:
        if name not in _CUTTERS:
            raise EdgemakerError(f"backbone {name!r} cannot be cut by depth; cuttable: {', '.join(sorted(_CUTTERS))}")
        try:
            spec = _CUTTERS[name](depth)
        except ValueError as exc:
            raise EdgemakerError(f"backbone {name!r}: {exc}") from None
    if input_size is not None:
        spec = spec.with_image_size(input_size)
    return spec


def unregister_backbone(name: str) -> None:
    _REGISTRY.pop(name, None)
    _UNLISTED.discard(name)


def get_spec(name: str) -> BackboneSpec:
    if name not in _REGISTRY:  # a generated variant (efficientnet_lite0_k5) registers on first use
        any(resolve(name) for resolve in _RESOLVERS)
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
