"""YAMNet (Google, AudioSet 521 classes): the founding paper's sound feature extractor, 1024-d per 0.96 s.

A MobileNetV1 with plain ReLU that reads the 96 x 64 log-mel patch as a one-channel image, rebuilt
by backbones/tfnet.py from the TF-Hub `google/yamnet/1` weights as its TFLite file stores them (int8
per channel, BatchNorm folded; tools/convert_weights.py ships them in weights_data/yamnet/). The
AudioSet classifier is in the same file: the backbone leaves it out; `network(with_classifier=True)`
keeps it, for checks and for reading a clip's AudioSet classes.
"""

from __future__ import annotations

from pathlib import Path

EMBEDDING_DIM = 1024
CLASSES = 521


def network(weights: Path | None = None, with_classifier: bool = False):
    """The float trunk: (N, 1, frames, mels) log-mel -> (N, 1024, frames/32, mels/32); with
    `with_classifier`, its `classifier` maps the pooled (N, 1024) to 521 AudioSet logits."""
    import torch

    from . import tfnet

    net = tfnet.with_relu(tfnet.mobilenet_v1(1.0, in_channels=1, bn=False))
    net.classifier = torch.nn.Linear(EMBEDDING_DIM, CLASSES)  # not called by forward
    if weights is not None:
        tfnet.load_into(net, tfnet.load_weights(weights), str(weights))
    if not with_classifier:
        del net.classifier
    return net.eval()


def embedding(weights: Path | None = None):
    """(N, frames, mels) log-mel patch -> (N, 1024): the trunk, averaged over time and frequency."""
    import torch

    net = network(weights)

    class Embedding(torch.nn.Module):
        pools_into_head = True  # backbones/equalise.py: the head after the mean may be equalised with `net`

        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, mel: torch.Tensor) -> torch.Tensor:
            return self.net(mel.unsqueeze(1)).mean(dim=(2, 3))

    return Embedding().eval()
