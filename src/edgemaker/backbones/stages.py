"""One stage view (stem, blocks, head) of every trunk that is cut, fine-tuned or tapped: EfficientNet
(the efficientnet_lite_pytorch package) and backbones/tfnet.py's MobileNetV1 (yamnet, mobilenet_v1_*)
and MobileNetV2. Code outside backbones/ goes through it and never reaches into a network's
attributes, so a change of either network is absorbed here.

`trunk_view` finds the trunk inside a registered builder's module: a wrapper module (pooling, a
front end, a patch turned into an image) names what it wraps as `inner` and, when it changes its
input on the way, says how with `to_inner(x)`; the walk stops at the module without `inner`.
"""

from __future__ import annotations


class Stages:
    """stem(x) -> blocks[0..n) -> head(x) (before pooling; identity where the network has none).

    With `depth`, the trunk as a cut backbone uses it: its first `depth` blocks, pooled straight after
    the last (no head)."""

    def __init__(self, net, depth: int | None = None) -> None:
        self.net, self.depth = net, depth

    @property
    def blocks(self) -> list:
        return self.all_blocks()[: self.depth]

    def all_blocks(self) -> list:
        raise NotImplementedError

    def stem(self, x):
        raise NotImplementedError

    @property
    def head(self):
        """The layers between the last block and the pooling, as one module (trained with the last block)."""
        import torch

        return self.whole_head() if self.depth is None else torch.nn.Identity()

    def whole_head(self):
        raise NotImplementedError

    def output_channels(self) -> list[int]:
        """Channels after each block (index k-1 for depth k)."""
        raise NotImplementedError


class EfficientNetStages(Stages):
    def all_blocks(self) -> list:
        return list(self.net._blocks)

    def stem(self, x):
        n = self.net
        return n._swish(n._bn0(n._conv_stem(x)))

    def whole_head(self):
        import torch

        n = self.net
        return torch.nn.Sequential(n._conv_head, n._bn1, n._swish)  # 1x1 conv + BN + activation

    def output_channels(self) -> list[int]:
        return [int(b._block_args.output_filters) for b in self.blocks]


class TfStages(Stages):
    """tfnet's MobileNetV1 (no head conv: the last separable block feeds the pooling) and MobileNetV2
    (a 1x1 conv to 1280 after the last inverted-residual block)."""

    def all_blocks(self) -> list:
        return list(self.net.blocks)

    def stem(self, x):
        return self.net.stem(x)

    def whole_head(self):
        import torch

        head = getattr(self.net, "head", None)
        return head if head is not None else torch.nn.Identity()

    def output_channels(self) -> list[int]:
        return [int((b.pw if hasattr(b, "pw") else b.project).conv.out_channels) for b in self.blocks]


def stages(net, depth: int | None = None) -> Stages:
    return (EfficientNetStages if hasattr(net, "_blocks") else TfStages)(net, depth)


class TrunkView:
    """The trunk inside a builder's module and the steps from the module's input to the trunk's
    float NCHW input (e.g. a sound's front end, then the log-mel patch as a one-channel image)."""

    def __init__(self, module, depth: int | None = None) -> None:
        self.module, self.steps, self.depth = module, [], depth
        net = module
        while getattr(net, "inner", None) is not None:
            step = getattr(net, "to_inner", None)
            if step is not None:
                self.steps.append(step)
            net = net.inner
        self.net = net

    def to_trunk(self, x):
        for step in self.steps:
            x = step(x)
        return x

    @property
    def stages(self) -> Stages:
        return stages(self.net, self.depth)


def trunk_view(module) -> TrunkView:
    return TrunkView(module)


def cut_trunk_view(spec, weights) -> TrunkView:
    """The whole trunk a cut backbone (mobilenet_v1_025_k7, its grey twin, efficientnet_lite0_k5) is
    cut from, seen up to its cut: what its fine-tuning trains, and saves whole, so the weights file
    loads through the cut's builder as the pretrained one does."""
    from . import mobilenet_v1, truncated

    parsed = mobilenet_v1.parse_name(spec.name)
    if parsed is not None:
        variant, depth, gray = parsed
        net = mobilenet_v1.trunk(variant, weights, 1 if gray else 3)
        return TrunkView(mobilenet_v1.with_gray_input(net) if gray else net, depth)
    variant, depth = truncated.parse_name(spec.name)
    return TrunkView(truncated.trunk(variant, spec.image.size, weights), depth)
