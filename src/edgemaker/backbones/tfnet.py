"""TensorFlow-style networks rebuilt in PyTorch from Keras or TFLite tensors.

Why one module: every pretrained network that only exists as a Keras .h5 or a TFLite file
(MobileNetV1, MobileNetV2, YAMNet) needs the same few things done exactly as TensorFlow does them,
or the features drift: "same" padding that is asymmetric on stride 2 (TF pads the bottom/right
more), ReLU6, BatchNorm with eps 1e-3 (unfolded from Keras) or already folded into a bias (TFLite),
and kernel layouts converted. Networks are plain torch modules, so the usual exporters (ONNX, TFLite
int8, TFLite Micro) and fine-tuning work on them unchanged.

Shipped weights are one .npz of PyTorch state-dict tensors: float tensors as they are, quantised
tensors as `NAME::q` (int8/uint8) + `NAME::scale` (scalar or one per output channel) +
`NAME::zero_point`, dequantised at load time, so an int8 source costs one byte a weight on disk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import EdgemakerError
from .v1_layout import BLOCKS as V1_BLOCKS
from .v1_layout import STEM as V1_STEM

BN_EPS = 1e-3  # Keras' BatchNormalization default (PyTorch's is 1e-5)
Stride = int | tuple[int, int]


def _pair(v: Stride) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding along one axis: (before, after); the odd pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SamePad(nn.Module):
    """Zero padding as TF "same" computes it for this input size (static in a traced graph)."""

    footprint_pad = True  # backbones/footprint.py: a stem's pad stays a separate operator in TFLite

    def __init__(self, kernel: Stride, stride: Stride) -> None:
        super().__init__()
        self.kernel, self.stride = _pair(kernel), _pair(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = same_padding(int(x.shape[-2]), self.kernel[0], self.stride[0])
        left, right = same_padding(int(x.shape[-1]), self.kernel[1], self.stride[1])
        if top == bottom == left == right == 0:
            return x
        return nn.functional.pad(x, (left, right, top, bottom))


class ConvBlock(nn.Module):
    """pad "same" -> conv -> BatchNorm (unfolded) or bias (folded) -> ReLU6 or linear."""

    def __init__(self, cin: int, cout: int, kernel: Stride = 3, stride: Stride = 1, groups: int = 1,
                 bn: bool = True, relu6: bool = True) -> None:
        super().__init__()
        self.pad = SamePad(kernel, stride)
        self.conv = nn.Conv2d(cin, cout, _pair(kernel), _pair(stride), groups=groups, bias=not bn)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS) if bn else nn.Identity()
        self.act = nn.ReLU6() if relu6 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(self.pad(x))))


def conv(cin: int, cout: int, kernel: Stride = 3, stride: Stride = 1, bn: bool = True, relu6: bool = True) -> ConvBlock:
    return ConvBlock(cin, cout, kernel, stride, 1, bn, relu6)


def depthwise(channels: int, kernel: Stride = 3, stride: Stride = 1, bn: bool = True, relu6: bool = True) -> ConvBlock:
    return ConvBlock(channels, channels, kernel, stride, channels, bn, relu6)


def pointwise(cin: int, cout: int, bn: bool = True, relu6: bool = True) -> ConvBlock:
    return ConvBlock(cin, cout, 1, 1, 1, bn, relu6)


def dense(cin: int, cout: int) -> nn.Linear:
    return nn.Linear(cin, cout)


class Separable(nn.Module):
    """MobileNetV1 block: depthwise 3x3 (+ReLU6) then pointwise 1x1 (+ReLU6)."""

    footprint_block = True  # backbones/footprint.py ends a cut here
    residual = False

    def __init__(self, cin: int, cout: int, stride: Stride, bn: bool = True) -> None:
        super().__init__()
        self.dw = depthwise(cin, 3, stride, bn)
        self.pw = pointwise(cin, cout, bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (+ReLU6, absent when expansion is 1), depthwise 3x3 (+ReLU6),
    linear 1x1 project, and the input added back when shape allows (stride 1, cin == cout)."""

    footprint_block = True

    def __init__(self, cin: int, cout: int, stride: Stride, expansion: int, bn: bool = True) -> None:
        super().__init__()
        hidden = cin * expansion
        self.expand = pointwise(cin, hidden, bn) if expansion != 1 else nn.Identity()
        self.dw = depthwise(hidden, 3, stride, bn)
        self.project = pointwise(hidden, cout, bn, relu6=False)
        self.residual = _pair(stride) == (1, 1) and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.residual else y


class MobileNetV1(nn.Module):
    """stem conv 3x3 + separable blocks; `forward` gives the feature map after the kept blocks.

    `cut(depth)` keeps the stem and the first `depth` blocks only, so an exported graph holds no
    unused weights; `pooled_per_block` gives every block's pooled output in one pass (the budget
    search tries every cut from one extraction).
    """

    def __init__(self, stem: int, blocks: Sequence[tuple[int, Stride]], stem_stride: Stride = 2,
                 in_channels: int = 3, bn: bool = True) -> None:
        super().__init__()
        self.stem = conv(in_channels, stem, 3, stem_stride, bn)
        layers, cin = [], stem
        for cout, stride in blocks:
            layers.append(Separable(cin, cout, stride, bn))
            cin = cout
        self.blocks = nn.ModuleList(layers)

    @property
    def channels(self) -> list[int]:
        return [int(b.pw.conv.out_channels) for b in self.blocks]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return x

    def cut(self, depth: int) -> MobileNetV1:
        if not 1 <= depth <= len(self.blocks):
            raise ValueError(f"depth must be 1..{len(self.blocks)}, got {depth}")
        self.blocks = nn.ModuleList(list(self.blocks)[:depth])
        return self

    def pooled_per_block(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        pooled = []
        for block in self.blocks:
            x = block(x)
            pooled.append(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))
        return torch.cat(pooled, dim=1)


def mobilenet_v1(width: float = 1.0, in_channels: int = 3, bn: bool = True,
                 strides: Sequence[Stride] | None = None, stem_stride: Stride = 2) -> MobileNetV1:
    """MobileNetV1 at a width multiplier (channels int(c * width), as Keras and TF-slim), with the
    standard strides unless `strides` gives one per block (an (h, w) pair where they differ)."""
    strides = list(strides) if strides is not None else [s for _, s in V1_BLOCKS]
    if len(strides) != len(V1_BLOCKS):
        raise ValueError(f"MobileNetV1 has {len(V1_BLOCKS)} blocks; got {len(strides)} strides")
    blocks = [(int(c * width), s) for (c, _), s in zip(V1_BLOCKS, strides)]
    return MobileNetV1(int(V1_STEM * width), blocks, stem_stride, in_channels, bn)


def pooled(module: nn.Module) -> nn.Module:
    """module (N, C, H, W) -> (N, C) by global average pooling."""

    class Pooled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = module

        @property
        def inner(self):  # backbones/stages.py: the trunk
            return self.net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x).mean(dim=(2, 3))

    return Pooled()


def rgb_to_gray_stem(first: nn.Conv2d) -> nn.Conv2d:
    """The same convolution for a 1-channel input: its kernel summed over RGB, so a grey image
    (R = G = B) gives exactly the features the pretrained RGB network gives."""
    gray = nn.Conv2d(1, first.out_channels, first.kernel_size, first.stride, first.padding,
                     first.dilation, 1, first.bias is not None)
    with torch.no_grad():
        gray.weight.copy_(first.weight.sum(dim=1, keepdim=True))
        if first.bias is not None:
            gray.bias.copy_(first.bias)
    return gray


# --- kernel layouts ----------------------------------------------------------------------------

def keras_conv(kernel: np.ndarray) -> np.ndarray:
    """Keras (kh, kw, Cin, Cout) -> PyTorch (Cout, Cin, kh, kw)."""
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))


def keras_depthwise(kernel: np.ndarray) -> np.ndarray:
    """Keras (kh, kw, C, 1) -> PyTorch (C, 1, kh, kw)."""
    return np.ascontiguousarray(kernel.transpose(2, 3, 0, 1))


def keras_dense(kernel: np.ndarray) -> np.ndarray:
    """Keras (Cin, Cout) -> PyTorch (Cout, Cin)."""
    return np.ascontiguousarray(kernel.T)


def tflite_conv(kernel: np.ndarray) -> np.ndarray:
    """TFLite (Cout, kh, kw, Cin) -> PyTorch (Cout, Cin, kh, kw)."""
    return np.ascontiguousarray(kernel.transpose(0, 3, 1, 2))


def tflite_depthwise(kernel: np.ndarray) -> np.ndarray:
    """TFLite (1, kh, kw, C) -> PyTorch (C, 1, kh, kw)."""
    return np.ascontiguousarray(kernel.transpose(3, 0, 1, 2))


def keras_batchnorm(prefix: str, gamma, beta, mean, variance) -> dict[str, np.ndarray]:
    return {f"{prefix}.weight": gamma, f"{prefix}.bias": beta,
            f"{prefix}.running_mean": mean, f"{prefix}.running_var": variance}


# --- the shipped weights file ------------------------------------------------------------------

@dataclass(frozen=True)
class Quantised:
    """An integer tensor kept as stored: value = (q - zero_point) * scale, scale and zero point
    scalar or one per index of axis 0 (the output channel in PyTorch layout)."""

    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray

    def dequantise(self) -> np.ndarray:
        shape = (-1,) + (1,) * (self.q.ndim - 1)
        scale = np.asarray(self.scale, np.float64)
        zero = np.asarray(self.zero_point, np.float64)
        if scale.size > 1:
            scale = scale.reshape(shape)
        if zero.size > 1:
            zero = zero.reshape(shape)
        return ((self.q.astype(np.float64) - zero) * scale).astype(np.float32)

    def transposed(self, layout) -> Quantised:
        """The same tensor in another layout; per-channel scales must already follow axis 0 of the result."""
        return Quantised(layout(self.q), self.scale, self.zero_point)


def save_weights(path: Path, tensors: Mapping[str, np.ndarray | Quantised]) -> None:
    """Write the shipped weights file (atomically; identical bytes for identical tensors)."""
    import io
    import zipfile

    from ..atomic import atomic_path

    arrays: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        if isinstance(value, Quantised):
            arrays[f"{name}::q"] = np.ascontiguousarray(value.q)
            arrays[f"{name}::scale"] = np.asarray(value.scale, np.float32).reshape(-1)
            arrays[f"{name}::zero_point"] = np.asarray(value.zero_point, np.int32).reshape(-1)
        else:
            arrays[name] = np.ascontiguousarray(value)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".npz") as tmp:
        # A fixed timestamp: re-running the converter reproduces the same file and sha256.
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in sorted(arrays):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, arrays[name], allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, buf.getvalue())


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """The shipped weights file -> float32 state-dict tensors (quantised ones dequantised)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise EdgemakerError(f"{path}: not a readable weights file ({exc.__class__.__name__}); reinstall edgemaker") from None
    out: dict[str, torch.Tensor] = {}
    for key, value in arrays.items():
        name, _, part = key.partition("::")
        if part == "q":
            value = Quantised(value, arrays[f"{name}::scale"], arrays[f"{name}::zero_point"]).dequantise()
        elif part:
            continue
        out[name] = torch.from_numpy(np.asarray(value, np.float32))
    return out


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """The shipped .npz, or a .pth a run fine-tuned from it (tasks/finetune.py: the whole trunk's
    state dict, loaded tensors only) -> float state-dict tensors."""
    if Path(path).suffix == ".npz":
        return load_weights(path)
    from .weights import load_state_dict

    return load_state_dict(path)


def load_into(net: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    """Load `state` into `net`; every parameter and buffer must be given (BatchNorm's batch counter aside)."""
    missing, unexpected = net.load_state_dict(dict(state), strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise EdgemakerError(f"{source}: weights do not fit the network (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}); reinstall edgemaker")
    return net.eval()


def with_relu(net: nn.Module) -> nn.Module:
    """The same network with plain ReLU where it has ReLU6 (YAMNet is a MobileNetV1 trained with ReLU)."""
    for block in net.modules():
        if isinstance(block, ConvBlock) and isinstance(block.act, nn.ReLU6):
            block.act = nn.ReLU()
    return net


# MobileNetV2 at width 1.0: the stem's channels, each stage's (expansion, channels, repeats, first
# stride), and the final 1x1 convolution's channels (as TF-slim and Keras build it).
V2_STEM = 32
V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
             (6, 320, 1, 1))
V2_HEAD = 1280


class MobileNetV2(nn.Module):
    """stem conv 3x3/2 + inverted-residual blocks + 1x1 conv to 1280 (ReLU6): the feature map."""

    def __init__(self, in_channels: int = 3, bn: bool = True) -> None:
        super().__init__()
        self.stem = conv(in_channels, V2_STEM, 3, 2, bn)
        layers, cin = [], V2_STEM
        for expansion, cout, repeats, stride in V2_STAGES:
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expansion, bn))
                cin = cout
        self.blocks = nn.ModuleList(layers)
        self.head = pointwise(cin, V2_HEAD, bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def mobilenet_v2(in_channels: int = 3, bn: bool = True) -> MobileNetV2:
    return MobileNetV2(in_channels, bn)
