"""MobileNetV1 at width 0.25 and 0.5 (ImageNet), shipped inside the package, for microcontrollers.

Why: a 256 KB-flash board cannot hold EfficientNet-Lite, but MobileNetV1 0.25 is 213 k parameters
whole and was trained for this size. The weights were converted once from Google's checkpoints
(tools/convert_weights.py; licence and origin beside them in weights_data/) and are rebuilt by
backbones/tfnet.py. Fully convolutional: any input that is a multiple of 32 (96-224). Each cut
after block k (1..13) is a backbone of its own, `mobilenet_v1_025_k7`, registered on first use as
truncated.py does for EfficientNet-Lite, so the budget search and every exporter treat them alike.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from . import v1_layout
from .registry import _REGISTRY, _UNLISTED, get_spec, register_backbone
from .spec import BackboneSpec, ImageInput, WeightsSource

BLOCKS = len(v1_layout.BLOCKS)
_LICENCE = "Apache-2.0 (Google's ImageNet MobileNetV1 checkpoints; origin in weights_data/NAME/ORIGIN.md)"
_NAME = re.compile(r"^mobilenet_v1_(025|050)(?:_k(\d+))?$")


@dataclasses.dataclass(frozen=True)
class Variant:
    width: float
    batchnorm: bool  # unfolded (from Keras, float) or folded into biases (from a quantised TFLite)
    sha256: str
    mean: float
    size: int
    source: str
    parameters: tuple[int, ...]  # after each block (trunk parameters up to that cut)


VARIANTS = {
    "025": Variant(0.25, True, "303581b482745b476c5b64fc4a6dd1e21ca6088e63f40270cc207a125332a217", 127.5, 128,
                   "float32 Keras weights",
                   (480, 1232, 2672, 5200, 10128, 19280, 37328, 55376, 73424, 91472, 109520, 144208, 213072)),
    "050": Variant(0.5, False, "75e0cac7df7a3e4edf205836962353182b4f689606ced0885e3b0c535334df6c", 128.0, 160,
                   "uint8 TFLite weights, dequantised",
                   (1152, 3584, 8384, 17344, 35136, 69440, 137792, 206144, 274496, 342848, 411200, 545344, 813120)),
}


def channels(width: float) -> list[int]:
    """Pointwise channels after each block (index k-1 for the cut after block k)."""
    return [int(c * width) for c, _ in v1_layout.BLOCKS]


def cut_name(variant: str, depth: int) -> str:
    return f"mobilenet_v1_{variant}" if depth == BLOCKS else f"mobilenet_v1_{variant}_k{depth}"


def parse_name(name: str) -> tuple[str, int] | None:
    """('025', 7) for 'mobilenet_v1_025_k7', ('025', 13) for the whole 'mobilenet_v1_025', else None."""
    m = _NAME.match(name)
    return (m.group(1), int(m.group(2) or BLOCKS)) if m else None


def trunk(variant: str, weights: Path | None = None, in_channels: int = 3):
    """The whole float MobileNetV1 of `variant` (NCHW -> feature map), shipped weights loaded if given."""
    from . import tfnet

    v = VARIANTS[variant]
    net = tfnet.mobilenet_v1(v.width, bn=v.batchnorm)
    if weights is not None:
        tfnet.load_into(net, tfnet.load_weights(weights), str(weights))
    if in_channels == 1:
        net.stem.conv = tfnet.rgb_to_gray_stem(net.stem.conv)
    return net


def _build(spec: BackboneSpec, weights: Path):
    from . import tfnet

    parsed = parse_name(spec.name)
    assert parsed is not None
    variant, depth = parsed
    return tfnet.pooled(trunk(variant, weights).cut(depth)).eval()


def _spec(variant: str) -> BackboneSpec:
    v = VARIANTS[variant]
    return BackboneSpec(
        name=f"mobilenet_v1_{variant}",
        modality="image",
        feature_dim=channels(v.width)[-1],
        weights=WeightsSource(kind="pypi", location=f"edgemaker.backbones:weights_data/mobilenet_v1_{variant}/weights.npz",
                              sha256=v.sha256, package="edgemaker"),
        licence=_LICENCE,
        parameters=v.parameters[-1],
        image=ImageInput(size=v.size, mean=(v.mean,) * 3, std=(v.mean,) * 3),
        description=f"MobileNetV1 {v.width} (ImageNet, {v.source}), {v.size}px; any multiple of 32",
    )


def cut_spec(variant: str, depth: int, size: int | None = None) -> BackboneSpec:
    """MobileNetV1 `variant` cut after block `depth` (1..13) at `size` px, registered on first use."""
    if variant not in VARIANTS or not 1 <= depth <= BLOCKS:
        raise ValueError(f"MobileNetV1 {variant!r}: depth must be 1..{BLOCKS}")
    name = cut_name(variant, depth)
    if name not in _REGISTRY:
        v = VARIANTS[variant]
        spec = dataclasses.replace(_spec(variant), name=name, feature_dim=channels(v.width)[depth - 1],
                                   parameters=v.parameters[depth - 1],
                                   description=f"MobileNetV1 {v.width} cut after block {depth} of {BLOCKS} "
                                               "(ImageNet), pooled")
        register_backbone(spec)(_build)
        _UNLISTED.add(name)
    spec = get_spec(name)
    return spec.with_image_size(size) if size else spec


def ensure_registered(name: str) -> bool:
    """Register a cut named in saved options (e.g. a config.json); False if not one."""
    parsed = parse_name(name)
    if parsed is None:
        return False
    cut_spec(*parsed)
    return True


for _variant in VARIANTS:
    register_backbone(_spec(_variant))(_build)
