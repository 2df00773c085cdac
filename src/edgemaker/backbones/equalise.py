"""Cross-layer equalisation for networks rebuilt by backbones/tfnet.py (Nagel et al. 2019, "Data-Free
Quantization Through Weight Equalization and Bias Correction").

Why: an int8 file holds one scale per activation tensor. When a layer's output channels span very
different ranges (YAMNet's blocks 11-13: the largest channel 26-118x the median one), the small
channels round to a few int8 levels and the int8 network stops computing what the float one does.
A positive scale commutes with ReLU (ReLU(x / s) = ReLU(x) / s) and with zero padding, so dividing
output channel i of one convolution (weights and bias) by s_i and multiplying the matching input
channel of the next by s_i leaves the float function unchanged while moving range between the two.
ReLU6 clips at a fixed 6 and does not commute with scaling: such blocks are left as they are.

Two ways to choose s: `equalise_weights` balances the two layers' per-channel weight ranges (the
paper's data-free rule, for per-tensor weights); `equalise_activations` balances the activation
ranges measured on calibration inputs against the next layer's weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from .tfnet import ConvBlock, MobileNetV1

# Activations f with f(x / s) = f(x) / s for every s > 0.
POSITIVE_HOMOGENEOUS = (nn.ReLU, nn.Identity)
# A channel's activation is enlarged at most this much (a channel silent on the calibration inputs
# would otherwise get an unbounded gain, and overflow on inputs that do wake it).
MAX_GAIN = 128.0


def conv_sequence(net: MobileNetV1) -> list[ConvBlock]:
    """A MobileNetV1's convolution blocks in the order data flows through them."""
    layers = [net.stem]
    for block in net.blocks:
        layers += [block.dw, block.pw]
    return layers


def can_scale_output(block: ConvBlock) -> bool:
    """Output channels may be rescaled: bias folded (no BatchNorm) and a plain ReLU or no activation."""
    return (isinstance(block.bn, nn.Identity) and block.conv.bias is not None
            and isinstance(block.act, POSITIVE_HOMOGENEOUS))


def is_depthwise(block: ConvBlock) -> bool:
    return block.conv.groups > 1 and block.conv.groups == block.conv.in_channels == block.conv.out_channels


def input_ranges(block: ConvBlock) -> torch.Tensor:
    """Largest |weight| reading each input channel of the block's convolution."""
    w = block.conv.weight.detach().abs()
    return w.amax(dim=(1, 2, 3)) if is_depthwise(block) else w.amax(dim=(0, 2, 3))


def output_ranges(block: ConvBlock) -> torch.Tensor:
    """Largest |weight| of each output channel of the block's convolution."""
    return block.conv.weight.detach().abs().amax(dim=(1, 2, 3))


def rescale(first: ConvBlock, second: ConvBlock, s: torch.Tensor) -> None:
    """Output channel i of `first` divided by s_i, input channel i of `second` multiplied by it."""
    with torch.no_grad():
        first.conv.weight.div_(s.view(-1, 1, 1, 1))
        first.conv.bias.div_(s)
        second.conv.weight.mul_(s.view(-1, 1, 1, 1) if is_depthwise(second) else s.view(1, -1, 1, 1))


def scalable_pairs(layers: Sequence[ConvBlock]) -> list[int]:
    """Indices i where (layers[i], layers[i + 1]) may be equalised."""
    return [i for i in range(len(layers) - 1) if can_scale_output(layers[i])]


def equalise_weights(layers: Sequence[ConvBlock], sweeps: int = 20) -> int:
    """The paper's data-free rule: s_i = sqrt(r1_i / r2_i) gives both layers the range sqrt(r1_i r2_i)
    for channel i; repeated sweeps, since equalising a pair moves its neighbours' ranges. Returns the
    number of pairs equalised."""
    pairs = scalable_pairs(layers)
    for _ in range(sweeps):
        for i in pairs:
            r1, r2 = output_ranges(layers[i]), input_ranges(layers[i + 1])
            ok = (r1 > 0) & (r2 > 0)
            rescale(layers[i], layers[i + 1], torch.where(ok, torch.sqrt(r1 / r2.clamp(min=1e-30)), torch.ones_like(r1)))
    return len(pairs)


def activation_ranges(layers: Sequence[ConvBlock], run, batches: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """Per-channel largest output of each block while `run(batch)` runs over `batches`."""
    ranges: list[torch.Tensor | None] = [None] * len(layers)

    def hook(i):
        def record(module, inputs, output):
            top = output.detach().amax(dim=(0, 2, 3))
            ranges[i] = top if ranges[i] is None else torch.maximum(ranges[i], top)
        return record

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            for batch in batches:
                run(batch)
    finally:
        for handle in handles:
            handle.remove()
    if any(r is None for r in ranges):
        raise ValueError("activation ranges need at least one calibration batch")
    return ranges


def equalise_activations(layers: Sequence[ConvBlock], ranges: Sequence[torch.Tensor], alpha: float = 0.5) -> int:
    """Give each rescalable output tensor even per-channel ranges (`ranges`: measured before, by
    `activation_ranges`). Into a depthwise convolution (one per-channel weight scale per channel in
    int8) the ranges are made equal outright; into a pointwise one, whose int8 weights share a
    scale across input channels, the range is split as a^alpha : r2^(1 - alpha) between the
    activation and the weights reading it. Returns the number of pairs equalised."""
    pairs = scalable_pairs(layers)
    for i in pairs:
        act = ranges[i].to(layers[i].conv.weight.dtype)
        alive = act > 0
        if is_depthwise(layers[i + 1]):
            s = act.clone()
        else:
            s = act.clamp(min=1e-30) ** alpha / input_ranges(layers[i + 1]).clamp(min=1e-30) ** (1 - alpha)
        top = s[alive].max() if alive.any() else torch.tensor(1.0)
        s = torch.where(alive, (s / top).clamp(min=1.0 / MAX_GAIN), torch.ones_like(s))
        rescale(layers[i], layers[i + 1], s)
    return len(pairs)


def pooled_trunk(body: nn.Module) -> MobileNetV1 | None:
    """The plain-ReLU trunk whose output `body` mean-pools into the classifier's head (a module that
    says so with `pools_into_head`, as yamnet's embedding does), or None."""
    for module in body.modules():
        net = getattr(module, "net", None)
        if getattr(module, "pools_into_head", False) and isinstance(net, MobileNetV1):
            return net if can_scale_output(conv_sequence(net)[-1]) else None
    return None


def equalise_into_head(body: nn.Module, head: nn.Linear) -> torch.Tensor | None:
    """The data-free rule across the trunk's last convolution and the linear head after its mean
    pooling (both linear in each channel, so the classifier's float function is unchanged; the
    pooled embedding is rescaled). Why: a head fitted on standardised embeddings has the
    standardisation folded into its weights, so a channel with a small spread gets a large weight
    (YAMNet on ESC-10: the largest head column 10,000x the median one); an int8 head has one weight
    scale per class row, and the other columns round to zero. Returns s (the pooled embedding is now
    the original one divided by s), or None when the body has no such trunk."""
    net = pooled_trunk(body)
    if net is None:
        return None
    last = conv_sequence(net)[-1]
    r1, r2 = output_ranges(last), head.weight.detach().abs().amax(dim=0)
    ok = (r1 > 0) & (r2 > 0)
    s = torch.where(ok, torch.sqrt(r1 / r2.clamp(min=1e-30)), torch.ones_like(r1))
    with torch.no_grad():
        last.conv.weight.div_(s.view(-1, 1, 1, 1))
        last.conv.bias.div_(s)
        head.weight.mul_(s.view(1, -1))
    return s
