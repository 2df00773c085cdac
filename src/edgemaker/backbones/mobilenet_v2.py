"""MobileNetV2 1.0 (ImageNet): the founding paper's image feature extractor, 1280-d.

Rebuilt by backbones/tfnet.py from Google's quantisation-aware-trained `mobilenet_v2_1.0_224_quant`
(uint8 weights as stored, BatchNorm folded; tools/convert_weights.py ships them in
weights_data/mobilenet_v2/). That file was chosen over a TF2 post-training-quantised copy of the
Keras weights: a linear probe on caltech-dev10 scores 0.975 on its features against 0.955, and its
weights are smaller. Input as the source: RGB (x - 128) / 128, 224 px; fully convolutional, so
any multiple of 32 also works.
"""

from __future__ import annotations

from pathlib import Path

from .registry import register_backbone
from .spec import BackboneSpec, ImageInput, WeightsSource

# weights_data/mobilenet_v2/ORIGIN.md
WEIGHTS_SHA256 = "1d516b820bf3ef6a97d51e2123953e11f4380d7a4079e790ab8a6a8557487aed"
PARAMETERS = 2_206_816  # BatchNorm folded into biases, without the ImageNet classifier


def trunk(weights: Path | None = None):
    """The float network: (N, 3, H, W) -> (N, 1280, H/32, W/32)."""
    from . import tfnet

    net = tfnet.mobilenet_v2(bn=False)
    if weights is not None:
        tfnet.load_into(net, tfnet.read_state(weights), str(weights))  # a .pth: fine-tuned by a run
    return net


def _build(spec: BackboneSpec, weights: Path):
    from . import tfnet

    return tfnet.pooled(trunk(weights)).eval()


register_backbone(BackboneSpec(
    name="mobilenet_v2",
    modality="image",
    feature_dim=1280,
    weights=WeightsSource(kind="pypi", location="edgemaker.backbones:weights_data/mobilenet_v2/weights.npz",
                          sha256=WEIGHTS_SHA256, package="edgemaker"),
    licence="Apache-2.0 (Google's ImageNet MobileNetV2 1.0/224 quant; origin in weights_data/mobilenet_v2/ORIGIN.md)",
    parameters=PARAMETERS,
    image=ImageInput(size=224, mean=(128.0,) * 3, std=(128.0,) * 3),
    description="MobileNetV2 1.0 (ImageNet, the founding paper's image extractor), 224px",
))(_build)
