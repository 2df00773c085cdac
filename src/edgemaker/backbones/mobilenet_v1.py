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
import functools
import re
from pathlib import Path

from . import v1_layout
from .registry import get_spec, is_registered, register_backbone, register_cutter, register_resolver
from .spec import BackboneSpec, ImageInput, WeightsSource

BLOCKS = len(v1_layout.BLOCKS)
_LICENCE = "Apache-2.0 (Google's ImageNet MobileNetV1 checkpoints; origin in weights_data/NAME/ORIGIN.md)"
_NAME = re.compile(r"^mobilenet_v1_(025|050)(_gray)?(?:_k(\d+))?$")


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


def cut_name(variant: str, depth: int, gray: bool = False) -> str:
    base = f"mobilenet_v1_{variant}{'_gray' if gray else ''}"
    return base if depth == BLOCKS else f"{base}_k{depth}"


def parse_name(name: str) -> tuple[str, int, bool] | None:
    """('025', 7, False) for 'mobilenet_v1_025_k7', ('025', 13, True) for 'mobilenet_v1_025_gray', else None."""
    m = _NAME.match(name)
    return (m.group(1), int(m.group(3) or BLOCKS), bool(m.group(2))) if m else None


def gray_twin(name: str) -> str:
    """The one-channel twin of a MobileNetV1 backbone (--grayscale on); other names unchanged."""
    parsed = parse_name(name)
    return cut_name(parsed[0], parsed[1], True) if parsed else name


def trunk(variant: str, weights: Path | None = None, in_channels: int = 3):
    """The whole float MobileNetV1 of `variant` (NCHW -> feature map), shipped weights loaded if given."""
    from . import tfnet

    v = VARIANTS[variant]
    net = tfnet.mobilenet_v1(v.width, bn=v.batchnorm)
    state = {} if weights is None else tfnet.read_state(weights)  # a .pth: fine-tuned by a run
    stem = state.get("stem.conv.weight")
    if in_channels == 1 and stem is not None and stem.shape[1] == 1:  # saved already grey
        net.stem.conv = tfnet.rgb_to_gray_stem(net.stem.conv)
    if state:
        tfnet.load_into(net, state, str(weights))
    if in_channels == 1 and net.stem.conv.in_channels == 3:
        net.stem.conv = tfnet.rgb_to_gray_stem(net.stem.conv)
    return net


def with_gray_input(net):
    """A one-channel network fed from the graph's RGB input: the channel mean (a grey camera's pixel
    given as R = G = B reaches it unchanged; colour never does)."""
    import torch

    class GrayInput(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        @property
        def inner(self):  # backbones/stages.py: the trunk, fed the grey channel
            return self.net

        def to_inner(self, x):
            return x.mean(dim=1, keepdim=True)

        def forward(self, x):
            return self.net(self.to_inner(x))

    return GrayInput()


def _build(spec: BackboneSpec, weights: Path):
    from . import tfnet

    parsed = parse_name(spec.name)
    assert parsed is not None
    variant, depth, gray = parsed
    net = tfnet.pooled(trunk(variant, weights, 1 if gray else 3).cut(depth))
    return (with_gray_input(net) if gray else net).eval()


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


def cut_spec(variant: str, depth: int, size: int | None = None, gray: bool = False) -> BackboneSpec:
    """MobileNetV1 `variant` cut after block `depth` (1..13) at `size` px, registered on first use;
    `gray`: its stem summed over RGB for one-channel (grey) input."""
    if variant not in VARIANTS or not 1 <= depth <= BLOCKS:
        raise ValueError(f"MobileNetV1 {variant!r}: depth must be 1..{BLOCKS}")
    name = cut_name(variant, depth, gray)
    if not is_registered(name):
        v = VARIANTS[variant]
        gray_saving = 2 * 9 * int(v1_layout.STEM * v.width) if gray else 0  # a 3x3 stem on 1 channel, not 3
        cut = f"cut after block {depth} of {BLOCKS}" if depth < BLOCKS else "whole"
        spec = dataclasses.replace(_spec(variant), name=name, feature_dim=channels(v.width)[depth - 1],
                                   parameters=v.parameters[depth - 1] - gray_saving,
                                   description=f"MobileNetV1 {v.width} {cut} (ImageNet), pooled"
                                               + ("; grey input (stem summed over RGB)" if gray else ""))
        register_backbone(spec, listed=False)(_build)
    spec = get_spec(name)
    return spec.with_image_size(size) if size else spec


def cut_specs(name: str, size: int) -> list[BackboneSpec]:
    """Every cut of `name` (e.g. mobilenet_v1_025, mobilenet_v1_025_gray) at `size`, the whole network last."""
    parsed = parse_name(name)
    assert parsed is not None and parsed[1] == BLOCKS
    return [cut_spec(parsed[0], k, size, parsed[2]) for k in range(1, BLOCKS + 1)]


def all_depths_module(name: str, weights: Path):
    """float NCHW -> every block's pooled output concatenated, from one forward pass."""
    import torch

    parsed = parse_name(name)
    assert parsed is not None
    net = trunk(parsed[0], weights, 1 if parsed[2] else 3)

    class AllDepths(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.pooled_per_block(x)

    return with_gray_input(AllDepths()).eval() if parsed[2] else AllDepths().eval()


def ensure_registered(name: str) -> bool:
    """Register a cut named in saved options (e.g. a config.json); False if not one."""
    parsed = parse_name(name)
    if parsed is None:
        return False
    cut_spec(parsed[0], parsed[1], gray=parsed[2])
    return True


for _variant in VARIANTS:
    register_backbone(_spec(_variant))(_build)

register_resolver(ensure_registered)
for _variant in VARIANTS:
    register_cutter(f"mobilenet_v1_{_variant}", functools.partial(cut_spec, _variant))
