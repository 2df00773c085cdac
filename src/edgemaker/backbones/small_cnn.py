"""small_cnn: a compact CNN trained from random initialisation on the user's own images.

Four conv/BN/ReLU blocks (widths w, 2w, 2w, 4w; max-pooled while the map is at least 4 px),
global average pooling and a dense layer give 4w-d features; at w=16 that is about 36k weights, an
int8 file of tens of KB. Grayscale data trains a one-channel network that averages the RGB input
inside the graph. Registered with weights kind "trained": a run trains it (tasks/scratch.py), saves
the weights and describes the result as an ordinary file-weights spec, so export needs no new path.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .registry import register_backbone
from .spec import BackboneSpec, ImageInput, WeightsSource
from .weights import load_state_dict

NAME = "small_cnn"
DEFAULT_WIDTH = 16
DEFAULT_SIZE = 32
ARCH_VERSION = 1  # bump when the layers change: old trained weights no longer fit


def widths(width: int) -> tuple[int, ...]:
    return (width, 2 * width, 2 * width, 4 * width)


def pooled(size: int, blocks: int) -> list[bool]:
    """Pool after a block while the map stays at least 2 px (so 8x8 inputs work too)."""
    out = []
    for _ in range(blocks):
        out.append(size >= 4)
        size = size // 2 if size >= 4 else size
    return out


def parameter_count(width: int, channels: int = 3) -> int:
    w, total, c = widths(width), 0, channels
    for out in w:
        total += 9 * c * out + 2 * out  # conv + BN scale/shift
        c = out
    return total + c * (4 * width) + 4 * width


def conv_blocks(chans: tuple[int, ...], pools: list[bool]):
    """nn.Sequential of conv 3x3 / BatchNorm / ReLU (/ 2x2 max-pool) blocks, chans[i] -> chans[i + 1]:
    the body of small_cnn and of small_cnn_mel (the same state-dict keys: blocks.N.conv, blocks.N.bn)."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, pool: bool) -> None:
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(cout)
            self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

        def forward(self, x):
            return self.pool(torch.relu(self.bn(self.conv(x))))

    return nn.Sequential(*(Block(a, b, p) for a, b, p in zip(chans, chans[1:], pools)))


def make_network(size: int, width: int = DEFAULT_WIDTH, grayscale: bool = False):
    """The trainable network: float NCHW (x - mean) / std -> (N, 4 * width) features."""
    import torch
    from torch import nn

    class SmallCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.grayscale = grayscale  # the RGB input is averaged to one channel in the graph
            chans = (1 if grayscale else 3,) + widths(width)
            self.blocks = conv_blocks(chans, pooled(size, 4))
            self.dense = nn.Linear(chans[-1], 4 * width)

        def forward(self, x):
            if self.grayscale:
                x = x.mean(dim=1, keepdim=True)
            x = self.blocks(x).mean(dim=(2, 3))
            return torch.relu(self.dense(x))

        def fuse(self):
            """Inference form, same function: BN folded into each conv; a grayscale network's first
            conv takes the three channels with a third of the weight each (the average, folded)."""
            from torch.nn.utils.fusion import fuse_conv_bn_eval

            self.eval()
            for block in self.blocks:
                block.conv = fuse_conv_bn_eval(block.conv, block.bn)
                block.bn = nn.Identity()
            if self.grayscale:
                first = self.blocks[0].conv
                rgb = nn.Conv2d(3, first.out_channels, 3, padding=1, bias=True)
                with torch.no_grad():
                    rgb.weight.copy_(first.weight.repeat(1, 3, 1, 1) / 3.0)
                    rgb.bias.copy_(first.bias)
                self.blocks[0].conv = rgb
                self.grayscale = False
            return self

    return SmallCNN()


def architecture(state: dict) -> tuple[int, bool]:
    """(width, grayscale) read back from saved weights."""
    first = state["blocks.0.conv.weight"]
    return int(first.shape[0]), int(first.shape[1]) == 1


def _build(spec: BackboneSpec, weights: Path):
    assert spec.image is not None
    state = load_state_dict(weights)
    width, gray = architecture(state)
    net = make_network(spec.image.size, width, gray)
    net.load_state_dict(state, strict=True)
    return net.fuse()


SPEC = BackboneSpec(
    name=NAME,
    modality="image",
    feature_dim=4 * DEFAULT_WIDTH,
    weights=WeightsSource(
        kind="trained",
        location="small_cnn: random initialisation, trained on your images by each run",
        sha256=hashlib.sha256(f"{NAME}-v{ARCH_VERSION}".encode()).hexdigest(),
    ),
    licence="Apache-2.0 (edgemaker architecture; the weights come from your data)",
    parameters=parameter_count(DEFAULT_WIDTH),
    image=ImageInput(size=DEFAULT_SIZE, mean=(127.5,) * 3, std=(127.5,) * 3, crop_padding=0),
    description="small CNN trained from scratch (4 conv blocks + dense); for tiny inputs and devices",
)

register_backbone(SPEC)(_build)
