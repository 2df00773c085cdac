"""Budgets as targets for sounds: efficientnet_lite0_mel and aisfx cut after each block (every depth
in one pass, cached as each cut backbone's own rows), predicted before training, the winner confirmed
by TensorFlow Lite Micro's measured arena."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_tone_folder

from edgemaker.backbones import sound_trunks
from edgemaker.data.splits import SplitOptions, make_splits
from edgemaker.data.validate import validate_folder
from edgemaker.errors import EdgemakerError
from edgemaker.tasks import budget_search
from edgemaker.tasks.options import AugmentationOptions, ClassifierOptions, HParams


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_tone_folder(tmp_path_factory.mktemp("sound-budget") / "data")


@pytest.fixture
def small_space(monkeypatch):
    """Only Lite0-mel on the 96x64 patch (aisfx, other sizes and small_cnn_mel are still predicted in
    their own test)."""
    monkeypatch.setattr(sound_trunks, "LITE0_MEL_SIZES", ((96, 64),))
    monkeypatch.setattr(sound_trunks, "families", lambda real=sound_trunks.families: real()[:1])
    monkeypatch.setattr(budget_search, "SMALL_CNN_MEL", ())


def test_sound_candidates_are_predicted_for_every_family_and_depth():
    cands = budget_search.sound_candidates(3)
    names = {c.name for c in cands}
    assert {"efficientnet_lite0_mel_96x64_k1", "efficientnet_lite0_mel_96x64", "efficientnet_lite0_mel_64x64_k16",
            "aisfx_k1", "aisfx_k3", "aisfx"} <= names
    by = {c.name: c.predicted for c in cands}
    assert by["aisfx_k1"]["flash_bytes"] < by["aisfx_k2"]["flash_bytes"] < by["aisfx"]["flash_bytes"]
    # the whole aisfx at 100 x 96 log-mel: TFLM measured 1,248,500 B (docs/benchmarks.md); a wide early map for any cut
    assert abs(by["aisfx"]["ram_bytes"] - 1_248_500) < 0.02 * 1_248_500 and by["aisfx_k1"]["ram_bytes"] > 1_000_000
    assert by["efficientnet_lite0_mel_64x64_k8"]["ram_bytes"] < by["efficientnet_lite0_mel_96x64_k8"]["ram_bytes"]
    small = [c for c in cands if c.backbone == "small_cnn_mel"]  # trained from scratch: a width each
    assert [c.width for c in small] == sorted(budget_search.SMALL_CNN_MEL) and all(c.size is None for c in small)
    assert by["small_cnn_mel_w8"]["flash_bytes"] < by["small_cnn_mel_w16"]["flash_bytes"] < by["small_cnn_mel_w32"]["flash_bytes"]


def test_every_sound_depth_in_one_pass_is_each_cut_backbones_cache_row(folder, small_space, tmp_path):
    from edgemaker.backbones.runtime import Backbone
    from edgemaker.features.cache import FeatureCache
    from edgemaker.features.depths import SoundAllDepthsBackbone, extract_all_depths
    from edgemaker.features.extract import extract_embeddings

    samples = validate_folder(folder).samples[:3]
    cache = FeatureCache(tmp_path / "f.sqlite")
    family = sound_trunks.families()[0]
    both = SoundAllDepthsBackbone(family)
    assert extract_all_depths(samples, both, cache) == 3
    assert extract_all_depths(samples, both, cache) == 0  # every depth cached: nothing recomputed
    for depth in (3, None):
        cut = Backbone(sound_trunks.lite0_mel_spec((96, 64), depth))
        direct = extract_embeddings(samples, cut, None)
        cached = extract_embeddings(samples, cut, cache)
        assert len(direct.vectors) > len(samples)  # several windows per clip, each its own row
        np.testing.assert_allclose(cached.vectors, direct.vectors, rtol=1e-3, atol=1e-3)
    cache.close()


def test_nothing_fits_a_sound_budget_names_the_closest(folder, small_space):
    from edgemaker.tasks.classifier import AudioClassifier

    s = make_splits(validate_folder(folder), SplitOptions(seed=0))
    with pytest.raises(EdgemakerError, match=r"no model fits .* the closest is efficientnet_lite0_mel_96x64_k1 "):
        budget_search.search(AudioClassifier, s.train, s.val, ClassifierOptions(), None, None, 20_000, 64_000)


def test_sound_budget_search_picks_a_fitting_trunk_confirmed_by_tflm(folder, small_space, tmp_path):
    pytest.importorskip("litert_torch")
    from edgemaker.pipeline import train_run

    options = ClassifierOptions(hparams=HParams(epochs=6), augmentation=AugmentationOptions(enabled=False))
    m = train_run(folder, tmp_path / "run", options, formats=["onnx-fp32"], max_flash=120_000, max_ram=256_000)
    rec = m["budget_search"]
    winner = next(c for c in rec["candidates"] if c["name"] == rec["winner"])
    assert winner["fits"] and winner["name"].startswith("efficientnet_lite0_mel_96x64_k")
    assert all(not c["fits"] for c in rec["candidates"] if c["predicted"]["flash_bytes"] > 120_000)
    conf = rec["confirmed"]
    assert conf["fits"] and conf["ram_source"] == "measured by TFLite Micro", conf
    assert abs(conf["ram_bytes"] - winner["predicted"]["ram_bytes"]) <= 0.05 * conf["ram_bytes"], conf
    assert abs(conf["flash_bytes"] - winner["predicted"]["flash_bytes"]) <= 0.2 * conf["flash_bytes"], conf
    check = next(e for e in m["exports"] if e["format"] == "tflite-int8")["tflm"]
    assert check["status"] == "ok" and check["agreement_with_litert"] >= 0.99, check
    assert m["backbone"]["name"] == winner["backbone"]


def test_a_budget_only_small_cnn_mel_fits_trains_it_from_scratch(folder, tmp_path):
    """Under 40 kB of flash no frozen trunk fits: the search trains small_cnn_mel (the largest fitting
    width) on the clips, and TFLite Micro confirms the real int8 file against the prediction."""
    pytest.importorskip("litert_torch")
    from edgemaker.pipeline import train_run

    options = ClassifierOptions(hparams=HParams(epochs=12, learning_rate=3e-3), augmentation=AugmentationOptions(views=1))
    m = train_run(folder, tmp_path / "run", options, formats=["tflite-int8"], max_flash=40_000, max_ram=64_000)
    rec = m["budget_search"]
    fitting = [c["name"] for c in rec["candidates"] if c["fits"]]
    assert fitting == ["small_cnn_mel_w8"] and rec["winner"] == "small_cnn_mel_w8", rec["candidates"]
    assert m["backbone"]["name"] == "small_cnn_mel" and m["training"]["network"]["width"] == 8
    assert m["test"]["accuracy"] > 0.5  # three tones: chance is 1/3
    conf = rec["confirmed"]
    assert conf["fits"], conf
    assert conf["flash_bytes"] <= conf["predicted"]["flash_bytes"], conf  # the filter never lets a file through
    if conf["ram_source"] == "measured by TFLite Micro":
        assert abs(conf["ram_bytes"] - conf["predicted"]["ram_bytes"]) <= 0.1 * conf["ram_bytes"], conf
