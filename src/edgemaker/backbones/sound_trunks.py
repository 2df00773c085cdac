"""Sound backbones cut for microcontrollers: efficientnet_lite0_mel and aisfx after each block.

Why: the whole sound backbones need 4-5 MB of flash and 1.2-1.5 MB of arena; their early blocks are
small. Names (registered on first use, as backbones/truncated.py does for images):
- `efficientnet_lite0_mel_96x64_k7`: the 0.96 s standardised log-mel patch (96 frames x 64 bands) fed
  to Lite0 at 96x64 (its own resolution; `_64x64` resizes it), cut after block 7;
  `efficientnet_lite0_mel_96x64` is the whole Lite0 at that size;
- `aisfx_k2`: aisfx's first 2 of its 4 conv blocks (aisfx itself is all 4), same 2.3 s windows.
The front end stays in the float graph (a waveform in); the full-int8 file takes the log-mel patch,
as every sound model's does. `all_depths(family)` gives every depth's embedding in one pass
(features/depths.py stores each under its own depth's cache key); `footprints(family, n_classes)`
predicts each depth's int8 flash, arena and MACs from the graph (backbones/footprint.py).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from .registry import get_spec, is_registered, register_backbone, register_cutter, register_resolver
from .sound_names import AISFX_NAME, LITE0_MEL_NAME
from .spec import BackboneSpec

LITE0_MEL_SIZES = ((96, 64), (64, 64))  # (H = frames, W = bands); 96x64 is the patch itself
AISFX_BLOCKS = 4


def lite0_mel_name(size: tuple[int, int], depth: int | None) -> str:
    return f"efficientnet_lite0_mel_{size[0]}x{size[1]}" + (f"_k{depth}" if depth else "")


def aisfx_name(depth: int) -> str:
    return "aisfx" if depth == AISFX_BLOCKS else f"aisfx_k{depth}"


@functools.cache
def _lite0_counts() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(feature width after each block, parameters up to each block and then of the whole network),
    from one network: building one per depth would cost a second each."""
    from .truncated import trunk

    net = trunk("lite0", 224)
    count = [sum(p.numel() for m in (net._conv_stem, net._bn0) for p in m.parameters())]
    for block in net._blocks:
        count.append(count[-1] + sum(p.numel() for p in block.parameters()))
    whole = sum(p.numel() for name, p in net.named_parameters() if not name.startswith("_fc"))
    return tuple(int(b._block_args.output_filters) for b in net._blocks), tuple(count[1:]) + (whole,)


def _lite0_dims() -> list[int]:
    return list(_lite0_counts()[0])


def _patch_network(size: tuple[int, int], depth: int | None, weights: Path | None, every_depth: bool = False):
    """(N, frames, mels) log-mel -> standardised, as a (3, H, W) image -> Lite0 (cut after `depth`)."""
    import torch

    from .audio_backbones import patch_to_image
    from .truncated import trunk, all_depths_module, make_truncated, pooled_whole

    net = trunk("lite0", size, weights)
    body = all_depths_module(net) if every_depth else (make_truncated(net, depth) if depth else pooled_whole(net))

    class PatchTrunk(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = body

        def forward(self, mel: torch.Tensor) -> torch.Tensor:
            return self.body(patch_to_image(mel, size))

    return PatchTrunk().eval()


def _build(spec: BackboneSpec, weights: Path):
    from .audio_backbones import with_frontend, aisfx_embedding
    from .frontends import AISFX_LOGMEL, LITE0_MEL_LOGMEL

    m = LITE0_MEL_NAME.match(spec.name)
    if m:
        size, depth = (int(m.group(1)), int(m.group(2))), int(m.group(3)) if m.group(3) else None
        return with_frontend(LITE0_MEL_LOGMEL, _patch_network(size, depth, weights))
    m = AISFX_NAME.match(spec.name)
    assert m is not None, spec.name
    return with_frontend(AISFX_LOGMEL, aisfx_embedding(weights, int(m.group(1))))


def _register(name: str, base: str, feature_dim: int, parameters: int, description: str) -> BackboneSpec:
    if not is_registered(name):
        spec = dataclasses.replace(get_spec(base), name=name, feature_dim=feature_dim, parameters=parameters,
                                   description=description)
        register_backbone(spec, listed=False)(_build)
    return get_spec(name)


def lite0_mel_spec(size: tuple[int, int], depth: int | None) -> BackboneSpec:
    dims = _lite0_dims()
    if depth is not None and not 1 <= depth <= len(dims):
        raise ValueError(f"efficientnet_lite0 has {len(dims)} blocks; depth must be 1..{len(dims)}")
    if not all(16 <= s <= 512 for s in size):
        raise ValueError(f"patch image size must be within 16..512, got {size}")
    params = _lite0_counts()[1][depth - 1 if depth else -1]
    cut = f"cut after block {depth} of {len(dims)}" if depth else "whole network"
    return _register(lite0_mel_name(size, depth), "efficientnet_lite0_mel", dims[depth - 1] if depth else 1280,
                     params, f"EfficientNet-Lite0 on 0.96 s log-mel patches at {size[0]}x{size[1]}, {cut}")


def aisfx_spec(depth: int) -> BackboneSpec:
    if depth == AISFX_BLOCKS:
        return get_spec("aisfx")
    if not 1 <= depth < AISFX_BLOCKS:
        raise ValueError(f"aisfx has {AISFX_BLOCKS} conv blocks; depth must be 1..{AISFX_BLOCKS}")
    return _register(aisfx_name(depth), "aisfx", 64 * 2 ** (depth - 1), _aisfx_parameters(depth),
                     f"aisfx sound-effects embeddings, first {depth} of {AISFX_BLOCKS} conv blocks, 2.3 s windows")


def _aisfx_parameters(depth: int) -> int:
    # two 3x3 convolutions per block, no bias, and two BatchNorms (4 numbers per channel)
    total, cin = 0, 1
    for k in range(depth):
        c = 64 * 2 ** k
        total += 9 * cin * c + 9 * c * c + 8 * c
        cin = c
    return total


def ensure_registered(name: str) -> bool:
    """Register a cut sound backbone named in saved options (a config.json); False if not one."""
    m = LITE0_MEL_NAME.match(name)
    if m:
        lite0_mel_spec((int(m.group(1)), int(m.group(2))), int(m.group(3)) if m.group(3) else None)
        return True
    m = AISFX_NAME.match(name)
    if m:
        aisfx_spec(int(m.group(1)))
        return True
    return False


register_resolver(ensure_registered)
register_cutter("aisfx", aisfx_spec)
register_cutter("efficientnet_lite0_mel", lambda depth: lite0_mel_spec(LITE0_MEL_SIZES[0], depth))


# -- every depth in one pass, and each depth's footprint -------------------------------------------
@dataclasses.dataclass(frozen=True)
class Family:
    """One sound trunk at one input shape: the depths it can be cut at."""

    key: str  # e.g. "lite0_mel@96x64", "aisfx"
    specs: tuple[BackboneSpec, ...]  # one per depth (the last: the whole network at that shape)

    @property
    def dims(self) -> list[int]:
        return [s.feature_dim for s in self.specs]


def families() -> list[Family]:
    """Every sound family the budget search tries."""
    out = []
    for size in LITE0_MEL_SIZES:
        depths = list(range(1, len(_lite0_dims()) + 1)) + [None]
        out.append(Family(f"lite0_mel@{size[0]}x{size[1]}", tuple(lite0_mel_spec(size, d) for d in depths)))
    out.append(Family("aisfx", tuple(aisfx_spec(d) for d in range(1, AISFX_BLOCKS + 1))))
    return out


def all_depths_module(family: Family, weights: Path):
    """The waveform -> every depth's pooled features concatenated, in one forward pass."""
    from .audio_backbones import with_frontend, aisfx_embedding
    from .frontends import AISFX_LOGMEL, LITE0_MEL_LOGMEL

    if family.key == "aisfx":
        return with_frontend(AISFX_LOGMEL, aisfx_embedding(weights, AISFX_BLOCKS, every_depth=True))
    h, w = (int(v) for v in family.key.split("@")[1].split("x"))
    return with_frontend(LITE0_MEL_LOGMEL, _patch_network((h, w), None, weights, every_depth=True))


def footprints(family: Family, n_classes: int) -> list:
    """Each depth's predicted full-int8 footprint (the file takes the log-mel patch)."""
    from .footprint import footprint_of, trace_ops
    from .frontends import LITE0_MEL_LOGMEL

    if family.key == "aisfx":
        from .audio_backbones import AISFX_FRAMES, aisfx_embedding
        from .frontends import AISFX_LOGMEL

        shape = (1, AISFX_FRAMES, AISFX_LOGMEL.n_mels)
        out = []
        for depth, dim in enumerate(family.dims, 1):
            ops, _ = trace_ops(aisfx_embedding(None, depth), shape)
            ops += [(ops[-1][1], ops[-1][1] // 4, 0, 0, 0, 0), (ops[-1][1] // 4, dim, 0, 0, 0, 0)]  # pool, mean/max
            out.append(footprint_of(ops, 0, n_classes, dim, input_elements=shape[1] * shape[2]))
        return out
    from .truncated import trunk, make_truncated, pooled_whole

    h, w = (int(v) for v in family.key.split("@")[1].split("x"))
    patch = 96 * LITE0_MEL_LOGMEL.n_mels  # the standardised patch (the front end standardises it)
    # a resize if any, and the 3 identical channels (CONCATENATION)
    prefix = [(patch, h * w, 0, 0, 0, 0)] if (h, w) != (96, 64) else []
    prefix.append((h * w, 3 * h * w, 0, 0, 0, 0))
    net = trunk("lite0", (h, w))
    ops, ends = trace_ops(make_truncated(net, len(net._blocks)), (1, 3, h, w))
    out = [footprint_of(prefix + ops[:end], 0, n_classes, dim, input_elements=patch)
           for end, dim in zip(ends, family.dims[:-1])]
    ops_full, _ = trace_ops(pooled_whole(net), (1, 3, h, w))  # the whole network, with the same prefix
    out.append(footprint_of(prefix + ops_full, 0, n_classes, family.dims[-1], input_elements=patch))
    return out
