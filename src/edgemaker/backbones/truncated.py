"""Truncated EfficientNet-Lite: the stem and the first k blocks, then global average pooling.

Why: a microcontroller with 256 KB of flash cannot hold a 3.4 M-parameter trunk, but the early
blocks of the same ImageNet network are small and still give useful features. Each (variant,
depth) is an ordinary registered backbone named `efficientnet_lite0_k5` (registered on first use,
so `edgemaker backbones` stays short), with the full network's weights file: its spec's cache_id
carries the depth (in the name) and the input size, and every exporter rebuilds it through the
registry as it does any backbone. `all_depths_module` yields the pooled features after every block
(and the full network's own 1280-d features) in one forward pass, so trying every depth costs one
extraction (features/depths.py).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path

from .registry import get_spec, is_registered, register_backbone, register_cutter, register_resolver
from .spec import BackboneSpec
from .weights import load_state_dict

VARIANTS = ("lite0", "lite1", "lite2")
_NAME = re.compile(r"^efficientnet_(lite[012])_k(\d+)$")


def truncated_name(variant: str, depth: int) -> str:
    return f"efficientnet_{variant}_k{depth}"


def parse_name(name: str) -> tuple[str, int] | None:
    """('lite0', 5) for 'efficientnet_lite0_k5', else None."""
    m = _NAME.match(name)
    return (m.group(1), int(m.group(2))) if m else None


def trunk(variant: str, size: int, weights: Path | None = None):
    """The EfficientNet for `size` (static 'same' padding depends on it), weights loaded if given."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(f"efficientnet-{variant}", image_size=size)
    if weights is not None:
        net.load_state_dict(load_state_dict(weights), strict=True)
    return net.eval()


def block_count(variant: str) -> int:
    return len(trunk(variant, 224)._blocks)


def make_truncated(net, depth: int):
    """stem + blocks[:depth] + mean pooling as a module: float NCHW -> (N, channels of block depth).
    Only the kept layers are held, so an exported graph has no unused weights."""
    import torch

    class Truncated(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = net._conv_stem
            self.bn0 = net._bn0
            self.act = net._swish
            self.blocks = torch.nn.ModuleList(list(net._blocks)[:depth])

        def forward(self, x):
            x = self.act(self.bn0(self.stem(x)))
            for block in self.blocks:
                x = block(x)
            return x.mean(dim=(2, 3))

    return Truncated().eval()


def pooled_whole(net):
    """The whole EfficientNet as a module: float NCHW -> (N, 1280) pooled features (no classifier)."""
    import torch

    class Whole(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.extract_features(x).mean(dim=(2, 3))

    return Whole().eval()


def all_depths_module(net):
    """float NCHW -> (N, sum of every block's channels + 1280): the pooled output after block 1, 2, ...
    and the full network's pooled head, concatenated, from one forward pass."""
    import torch

    class AllDepths(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            n = self.net
            x = n._swish(n._bn0(n._conv_stem(x)))
            pooled = []
            # GlobalAveragePool (not ReduceMean): ONNX Runtime keeps it in its blocked NCHWc layout, so
            # tapping every block costs no layout conversion of the feature maps.
            for block in n._blocks:
                x = block(x)
                pooled.append(torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))
            pooled.append(torch.nn.functional.adaptive_avg_pool2d(n._swish(n._bn1(n._conv_head(x))), 1).flatten(1))
            return torch.cat(pooled, dim=1)

    return AllDepths().eval()


def depth_dims(variant: str) -> list[int]:
    """Feature width after each block (index k-1 for depth k)."""
    return [int(b._block_args.output_filters) for b in trunk(variant, 224)._blocks]


def _parameters(variant: str, depth: int) -> int:
    net = make_truncated(trunk(variant, 224), depth)
    return sum(p.numel() for p in net.parameters())


def _build(spec: BackboneSpec, weights: Path):
    parsed = parse_name(spec.name)
    assert parsed is not None and spec.image is not None
    variant, depth = parsed
    return make_truncated(trunk(variant, spec.image.size, weights), depth)


def truncated_spec(variant: str, depth: int, size: int | None = None) -> BackboneSpec:
    """The spec of Lite`variant` cut after block `depth` (1-based) at `size` px, registered on first use."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}")
    name = truncated_name(variant, depth)
    if not is_registered(name):
        dims = depth_dims(variant)
        if not 1 <= depth <= len(dims):
            raise ValueError(f"efficientnet_{variant} has {len(dims)} blocks; depth must be 1..{len(dims)}")
        full = get_spec(f"efficientnet_{variant}")
        spec = dataclasses.replace(full, name=name, feature_dim=dims[depth - 1],
                                   parameters=_parameters(variant, depth),
                                   description=f"EfficientNet-{variant.capitalize()} truncated after block {depth} "
                                               f"of {len(dims)} (ImageNet), pooled")
        register_backbone(spec, listed=False)(_build)
    spec = get_spec(name)
    return spec.with_image_size(size) if size else spec


def ensure_registered(name: str) -> bool:
    """Register a truncated backbone named in saved options (e.g. a config.json); False if not one."""
    parsed = parse_name(name)
    if parsed is None or parsed[0] not in VARIANTS:
        return False
    truncated_spec(*parsed)
    return True


register_resolver(ensure_registered)
for _variant in VARIANTS:
    register_cutter(f"efficientnet_{_variant}", functools.partial(truncated_spec, _variant))
