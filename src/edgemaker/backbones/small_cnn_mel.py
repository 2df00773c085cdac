"""small_cnn_mel: small_cnn for sounds, a compact CNN trained from random initialisation on the
log-mel of the user's own clips (tasks/scratch_audio.py), with the front end in the graph.

Raw 16 kHz windows in (1.04 s: 64 frames of frontends.SMALL_LOGMEL, hopped by half a window), so
extraction, `predict` and every exporter treat it as any audio backbone (the front-end-less export
included). Network: four conv/BN/ReLU blocks (widths w, 2w, 2w, 4w) on the (frames, mels) map, 2x2
max-pooled while both sides are at least 4, global mean, dense + ReLU -> 4w features; at w=16 about
37k weights + 14k front-end constants, an int8 file of tens of KB. Only conv, max-pool, mean, dense
and the front end's aisfx ops: nothing TFLite Micro lacks in int8. Registered with weights kind
"trained"; a run saves the weights content-addressed and describes them with kind="file".
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .audio_backbones import audio_windows, with_frontend
from .frontends import SMALL_LOGMEL
from .registry import register_backbone
from .small_cnn import DEFAULT_WIDTH, conv_blocks, widths
from .spec import BackboneSpec, WeightsSource
from .weights import load_state_dict

NAME = "small_cnn_mel"
FRAMES = 64  # log-mel frames per window (16 ms hop: 1.04 s)
ARCH_VERSION = 1  # bump when the layers change: old trained weights no longer fit


def pooled(frames: int, mels: int, blocks: int) -> list[bool]:
    """Pool after a block while both sides of the map are at least 4."""
    out = []
    for _ in range(blocks):
        out.append(min(frames, mels) >= 4)
        if out[-1]:
            frames, mels = frames // 2, mels // 2
    return out


def parameter_count(width: int) -> int:
    total, c = 0, 1
    for out in widths(width):
        total += 9 * c * out + 2 * out  # conv + BN scale/shift
        c = out
    return total + c * (4 * width) + 4 * width


def make_network(width: int = DEFAULT_WIDTH):
    """The trainable network: float log-mel (N, FRAMES, n_mels) -> (N, 4 * width) features."""
    import torch
    from torch import nn

    class MelCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            chans = (1,) + widths(width)
            pools = pooled(FRAMES, SMALL_LOGMEL.n_mels, 4)
            self.blocks = conv_blocks(chans, pools)
            self.dense = nn.Linear(chans[-1], 4 * width)

        def forward(self, mel):
            x = self.blocks(mel.unsqueeze(1)).mean(dim=(2, 3))
            return torch.relu(self.dense(x))

        def fuse(self):
            """Inference form, same function: each BatchNorm folded into its conv."""
            from torch.nn.utils.fusion import fuse_conv_bn_eval

            self.eval()
            for block in self.blocks:
                block.conv = fuse_conv_bn_eval(block.conv, block.bn)
                block.bn = nn.Identity()
            return self

    return MelCNN()


def width_of(state: dict) -> int:
    return int(state["blocks.0.conv.weight"].shape[0])


def _build(spec: BackboneSpec, weights: Path):
    state = load_state_dict(weights)
    net = make_network(width_of(state))
    net.load_state_dict(state, strict=True)
    return with_frontend(SMALL_LOGMEL, net.fuse())


SPEC = BackboneSpec(
    name=NAME,
    modality="audio",
    feature_dim=4 * DEFAULT_WIDTH,
    weights=WeightsSource(
        kind="trained",
        location="small_cnn_mel: random initialisation, trained on your sounds by each run",
        sha256=hashlib.sha256(f"{NAME}-v{ARCH_VERSION}".encode()).hexdigest(),
    ),
    licence="Apache-2.0 (edgemaker architecture; the weights come from your data)",
    parameters=parameter_count(DEFAULT_WIDTH),
    audio=audio_windows(SMALL_LOGMEL, FRAMES, "log-mel 40 bands 50-8000 Hz, 512/256 STFT power at 16 kHz, "
                   "peak-normalised windows"),
    description="small CNN trained from scratch on log-mel (4 conv blocks + dense); for microcontrollers",
)

register_backbone(SPEC)(_build)
