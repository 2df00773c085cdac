"""The stages of a built EfficientNet trunk (stem, blocks, head), so code that cuts, fine-tunes or
taps a trunk never reaches into the network's private attributes: a change of the EfficientNet
package is absorbed here."""

from __future__ import annotations


class Stages:
    """stem(x) -> blocks[0..n) -> head(x) (1x1 conv + BN + activation, before pooling)."""

    def __init__(self, net) -> None:
        self.net = net

    @property
    def blocks(self) -> list:
        return list(self.net._blocks)

    def stem(self, x):
        n = self.net
        return n._swish(n._bn0(n._conv_stem(x)))

    def head(self, x):
        n = self.net
        return n._swish(n._bn1(n._conv_head(x)))

    @property
    def head_layers(self) -> tuple:
        """(conv, batch norm, activation) of the head, for a module that trains them."""
        return self.net._conv_head, self.net._bn1, self.net._swish

    def output_channels(self) -> list[int]:
        """Channels after each block (index k-1 for depth k)."""
        return [int(b._block_args.output_filters) for b in self.net._blocks]


def stages(net) -> Stages:
    return Stages(net)
