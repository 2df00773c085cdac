"""The TF-style network rebuilder and the MobileNetV1 weights shipped in the package.

The stored feature vectors (tests/data/tfnet/NAME.npz) were computed once by
tools/convert_weights.py, which also compared the rebuilt network with the TFLite interpreter's own
feature tensor where the source is a .tflite (ORIGIN.md records the error): a padding, layout or
scaling mistake in tfnet.py or a damaged weights file fails here, with no ../shared needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgemaker.backbones import get_builder, get_spec  # noqa: E402
from edgemaker.backbones import tfnet  # noqa: E402
from edgemaker.backbones.weights import resolve_weights, sha256_file  # noqa: E402
from edgemaker.errors import EdgemakerError  # noqa: E402

DATA = Path(__file__).parent / "data" / "tfnet"
SHIPPED = ["mobilenet_v1_025", "mobilenet_v1_050", "mobilenet_v2"]


def _fixture(size: int) -> np.ndarray:
    from PIL import Image

    image = np.asarray(Image.open(DATA / "fixture.png").convert("RGB"))
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    return image[top:top + size, left:left + size]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_give_the_source_features(name):
    stored = np.load(DATA / f"{name}.npz")
    spec = get_spec(name)
    path = resolve_weights(spec.weights)  # checks the sha256 the spec records
    assert sha256_file(path) == spec.weights.sha256
    assert (path.parent / "LICENSE").is_file() and spec.weights.sha256 in (path.parent / "ORIGIN.md").read_text()
    assert spec.image.mean[0] == float(stored["mean"]) and spec.image.std[0] == float(stored["std"])
    net = get_builder(name)(spec, path)
    x = torch.from_numpy((_fixture(int(stored["size"])).astype(np.float32) - float(stored["mean"]))
                         / float(stored["std"])).permute(2, 0, 1)[None]
    with torch.no_grad():
        got = net(x)[0].numpy()
    want = stored["features"]
    assert got.shape == want.shape == (spec.feature_dim,)
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-4


def test_symmetric_padding_would_be_caught(monkeypatch):
    """The stored vector tells TF's asymmetric stride-2 padding from PyTorch's symmetric one."""
    stored = np.load(DATA / "mobilenet_v1_025.npz")
    spec = get_spec("mobilenet_v1_025")
    monkeypatch.setattr(tfnet, "same_padding", lambda size, k, s: ((k - 1) // 2, (k - 1) // 2))
    net = get_builder(spec.name)(spec, resolve_weights(spec.weights))
    x = torch.from_numpy((_fixture(128).astype(np.float32) - 127.5) / 127.5).permute(2, 0, 1)[None]
    with torch.no_grad():
        got = net(x)[0].numpy()
    assert np.linalg.norm(got - stored["features"]) / np.linalg.norm(stored["features"]) > 0.05


def test_same_padding_matches_tensorflow():
    assert tfnet.same_padding(128, 3, 2) == (0, 1)  # even input, stride 2: the extra pixel after
    assert tfnet.same_padding(127, 3, 2) == (1, 1)
    assert tfnet.same_padding(128, 3, 1) == (1, 1)
    assert tfnet.same_padding(64, 1, 1) == (0, 0)
    pad = tfnet.SamePad(3, (2, 1))
    assert pad(torch.zeros(1, 1, 96, 64)).shape == (1, 1, 97, 66)


def test_cuts_keep_only_their_blocks_and_any_multiple_of_32_works():
    spec = get_spec("mobilenet_v1_025_k7").with_image_size(96)
    net = get_builder(spec.name)(spec, resolve_weights(spec.weights))
    assert sum(p.numel() for p in net.parameters()) == spec.parameters == 37_328
    for size in (96, 160, 224):
        assert net(torch.zeros(1, 3, size, size)).shape == (1, spec.feature_dim)


def test_quantised_tensors_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    q = rng.integers(-128, 128, size=(4, 2, 3, 3), dtype=np.int8)
    scale = np.array([0.5, 0.25, 0.125, 1.0], np.float32)
    tensors = {"a.weight": tfnet.Quantised(q, scale, np.zeros(4, np.int32)), "a.bias": np.ones(4, np.float32)}
    tfnet.save_weights(tmp_path / "w.npz", tensors)
    first = (tmp_path / "w.npz").read_bytes()
    tfnet.save_weights(tmp_path / "w.npz", tensors)
    assert (tmp_path / "w.npz").read_bytes() == first  # the converter reproduces its sha256
    loaded = tfnet.load_weights(tmp_path / "w.npz")
    np.testing.assert_allclose(loaded["a.weight"].numpy(), q.astype(np.float32) * scale[:, None, None, None])
    assert tfnet.Quantised(np.array([130, 128], np.uint8), np.array([0.5]), np.array([128])).dequantise().tolist() == [1.0, 0.0]
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(EdgemakerError, match="bad.npz"):
        tfnet.load_weights(tmp_path / "bad.npz")


def test_gray_stem_equals_rgb_on_grey_images():
    net = tfnet.mobilenet_v1(0.25).eval()
    gray = tfnet.mobilenet_v1(0.25).eval()
    gray.load_state_dict(net.state_dict())
    gray.stem.conv = tfnet.rgb_to_gray_stem(net.stem.conv)
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(gray(x), net(x.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-5)


def test_inverted_residual_adds_its_input_only_when_shapes_match():
    same = tfnet.InvertedResidual(8, 8, 1, 6).eval()
    down = tfnet.InvertedResidual(8, 16, 2, 6).eval()
    assert same.residual and not down.residual
    x = torch.rand(1, 8, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(same(x) - same.project(same.dw(same.expand(x))), x)
    assert down(x).shape == (1, 16, 8, 8)
