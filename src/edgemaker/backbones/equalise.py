"""Cross-layer equalisation (Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization
and Bias Correction") between a plain-ReLU trunk rebuilt by backbones/tfnet.py and the linear head
after its mean pooling.

Why: a head fitted on standardised embeddings has the standardisation folded into its weights, so
its columns span very different ranges, and a full-int8 head has one weight scale per class row:
the small columns round to a few levels (YAMNet's head on esc10-dev9: 160 of 1024 columns became
all zero). A positive scale commutes with ReLU (ReLU(x / s) = ReLU(x) / s) and with mean pooling,
so dividing the trunk's last convolution's output channel i (weights and bias) by s_i and
multiplying the head's column i by s_i leaves the classifier unchanged while giving both the range
sqrt(r1_i r2_i). ReLU6 clips at a fixed 6 and does not commute with scaling: such trunks are left
as they are.
"""

from __future__ import annotations

import torch
from torch import nn

from .tfnet import ConvBlock, MobileNetV1

# Activations f with f(x / s) = f(x) / s for every s > 0.
POSITIVE_HOMOGENEOUS = (nn.ReLU, nn.Identity)


def can_scale_output(block: ConvBlock) -> bool:
    """Output channels may be rescaled: bias folded (no BatchNorm) and a plain ReLU or no activation."""
    return (isinstance(block.bn, nn.Identity) and block.conv.bias is not None
            and isinstance(block.act, POSITIVE_HOMOGENEOUS))


def last_conv(net: MobileNetV1) -> ConvBlock:
    return net.blocks[-1].pw if len(net.blocks) else net.stem


def pooled_trunk(body: nn.Module) -> MobileNetV1 | None:
    """The plain-ReLU trunk whose output `body` mean-pools into the classifier's head (a module that
    says so with `pools_into_head`, as yamnet's embedding does), or None."""
    for module in body.modules():
        net = getattr(module, "net", None)
        if getattr(module, "pools_into_head", False) and isinstance(net, MobileNetV1):
            return net if can_scale_output(last_conv(net)) else None
    return None


def equalise_into_head(body: nn.Module, head: nn.Linear) -> torch.Tensor | None:
    """Equalise the trunk's last convolution with `head`, in place: s_i = sqrt(r1_i / r2_i), r1 the
    largest |weight| of the convolution's output channel i, r2 of the head's column i. Returns s
    (the pooled embedding is now the original one divided by s), or None when `body` has no such trunk."""
    net = pooled_trunk(body)
    if net is None:
        return None
    last = last_conv(net)
    r1 = last.conv.weight.detach().abs().amax(dim=(1, 2, 3))
    r2 = head.weight.detach().abs().amax(dim=0)
    ok = (r1 > 0) & (r2 > 0)
    s = torch.where(ok, torch.sqrt(r1 / r2.clamp(min=1e-30)), torch.ones_like(r1))
    with torch.no_grad():
        last.conv.weight.div_(s.view(-1, 1, 1, 1))
        last.conv.bias.div_(s)
        head.weight.mul_(s.view(1, -1))
    return s
