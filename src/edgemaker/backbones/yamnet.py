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
    if with_classifier:
        net.classifier = torch.nn.Linear(EMBEDDING_DIM, CLASSES)  # not called by forward
    if weights is not None:
        state = tfnet.read_state(weights)  # a .pth: fine-tuned by a run (the trunk only)
        if not with_classifier:
            state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        tfnet.load_into(net, state, str(weights))
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

        @property
        def inner(self):  # backbones/stages.py: the trunk, fed the patch as a one-channel image
            return self.net

        def to_inner(self, mel: torch.Tensor) -> torch.Tensor:
            return mel.unsqueeze(1)

        def forward(self, mel: torch.Tensor) -> torch.Tensor:
            return self.net(self.to_inner(mel)).mean(dim=(2, 3))

    return Embedding().eval()
