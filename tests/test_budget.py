"""Budgets as targets: truncated backbones (every depth in one pass), predicted vs real footprint,
the search (a fitting winner, or one error naming the closest), and distillation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_image_folder

from edgemaker.backbones.footprint import predict
from edgemaker.backbones.truncated import trunk, all_depths_module, depth_dims, make_truncated, truncated_spec
from edgemaker.data.splits import SplitOptions, make_splits
from edgemaker.data.validate import validate_folder
from edgemaker.errors import EdgemakerError
from edgemaker.tasks import budget_search
from edgemaker.tasks.options import AugmentationOptions, ClassifierOptions, HParams, ModelOptions


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("budget") / "data", per_class=8)


@pytest.fixture(scope="module")
def splits(folder):
    return make_splits(validate_folder(folder), SplitOptions(seed=0))


def test_every_depth_in_one_pass_equals_each_truncated_forward():
    import torch

    from edgemaker.backbones import get_spec
    from edgemaker.backbones.weights import resolve_weights

    weights = resolve_weights(get_spec("efficientnet_lite0").weights)
    net = trunk("lite0", 64, weights)
    x = torch.randn(2, 3, 64, 64)
    dims = depth_dims("lite0")
    with torch.no_grad():
        parts = torch.split(all_depths_module(net)(x), dims + [1280], dim=1)
        for k in (1, 4, 9, len(dims)):
            np.testing.assert_allclose(parts[k - 1].numpy(), make_truncated(net, k)(x).numpy(), rtol=1e-5, atol=1e-5)
        full = net.extract_features(x).mean(dim=(2, 3))
        np.testing.assert_allclose(parts[-1].numpy(), full.numpy(), rtol=1e-5, atol=1e-5)


def test_all_depth_cache_rows_are_what_the_truncated_backbone_computes(splits, tmp_path):
    from edgemaker.backbones.runtime import Backbone
    from edgemaker.data.images import Augmentation
    from edgemaker.features.cache import FeatureCache
    from edgemaker.features.depths import AllDepthsBackbone, extract_all_depths
    from edgemaker.features.extract import extract_embeddings

    samples = splits.train[:4]
    cache = FeatureCache(tmp_path / "f.sqlite")
    both = AllDepthsBackbone("lite0", 64)
    aug = Augmentation()
    assert extract_all_depths(samples, both, cache, 1, aug) == 4
    assert extract_all_depths(samples, both, cache, 1, aug) == 0  # every depth cached: nothing recomputed
    truncated = Backbone(truncated_spec("lite0", 6, 64))
    direct = extract_embeddings(samples, truncated, None, 1, aug)
    cached = extract_embeddings(samples, truncated, cache, 1, aug)
    np.testing.assert_allclose(cached.vectors, direct.vectors, rtol=1e-4, atol=1e-4)
    cache.close()


def test_predicted_footprint_matches_the_real_int8_file(splits, tmp_path):
    """MACs exactly, activations within 10%, TFLM's measured arena within 5%, flash within 2%
    (see backbones/footprint.py for the fits; tests/test_footprint_flash.py checks more cuts)."""
    pytest.importorskip("litert_torch")
    from edgemaker.export.device import budget, check_budget
    from edgemaker.export.quantization import Quantization
    from edgemaker.tasks.classifier import ImageClassifier

    spec = truncated_spec("lite0", 7, 64)
    fp = predict(make_truncated(trunk("lite0", 64), 7), 64, 3, spec.feature_dim)
    clf = ImageClassifier.create(splits.train, splits.val, ClassifierOptions(
        model=ModelOptions(backbone=spec.name, input_size=64), augmentation=AugmentationOptions(enabled=False)))
    path = clf.export(tmp_path, Quantization.for_int8([s.path for s in splits.train]), runtime="tflite")
    real = budget(path)
    assert real.macs == fp.macs
    assert abs(real.peak_ram_bytes - fp.planned_bytes) <= 0.1 * real.peak_ram_bytes  # activations
    if real.arena_bytes is not None:  # + TFLM's persistent data: the arena it really needs
        assert abs(real.arena_bytes - fp.ram_bytes) <= 0.05 * real.arena_bytes, (real, fp)
    assert abs(real.flash_bytes - fp.flash_bytes) <= 0.02 * real.flash_bytes, (real, fp)
    assert check_budget(path.name, real, fp.flash_bytes * 2, fp.ram_bytes * 2) is None
    assert "does not fit" in check_budget(path.name, real, real.flash_bytes // 2, None)


def _small_space(monkeypatch):
    monkeypatch.setattr(budget_search, "SIZES", (64,))
    monkeypatch.setattr(budget_search, "SMALL_CNN", ((8, 32),))
    monkeypatch.setattr(budget_search, "MOBILENET_V1_SIZES", ())


def test_nothing_fits_names_the_closest(splits, monkeypatch):
    _small_space(monkeypatch)
    from edgemaker.tasks.classifier import ImageClassifier

    with pytest.raises(EdgemakerError, match=r"no model fits --max-flash 5\.0 kB .* the closest is \S+ \(predicted flash"):
        budget_search.search(ImageClassifier, splits.train, splits.val, ClassifierOptions(), None, None, 5_000, 4_000)


def test_budget_search_run_exports_a_fitting_winner_with_frontier(folder, tmp_path, monkeypatch):
    pytest.importorskip("litert_torch")
    _small_space(monkeypatch)
    from edgemaker.pipeline import train_run

    options = ClassifierOptions(hparams=HParams(epochs=6), augmentation=AugmentationOptions(views=1))
    m = train_run(folder, tmp_path / "run", options, formats=["onnx-fp32"], max_flash=80_000, max_ram=128_000)
    rec = m["budget_search"]
    winner = next(c for c in rec["candidates"] if c["name"] == rec["winner"])
    assert winner["fits"] and winner["val_accuracy"] is not None and "test split was not used" in rec["why"]
    assert not any(c["fits"] for c in rec["candidates"] if c["predicted"]["flash_bytes"] > 80_000)
    conf = rec["confirmed"]  # measured on the real int8 file (added to the formats to confirm the budget)
    assert conf["fits"] and conf["flash_bytes"] <= 80_000 and conf["ram_bytes"] <= 128_000
    assert m["budget"]["problems"] == [] and any(e["format"] == "tflite-int8" for e in m["exports"])
    tried = rec["int8_attempts"]  # the winner's int8 file tried before export (tasks/budget_fallback.py)
    assert [a["candidate"] for a in tried] == [rec["winner"]] and tried[0]["refused"] is None
    assert tried[0]["flash_bytes"] == conf["flash_bytes"]
    svg = (tmp_path / "run" / "frontier.svg").read_text()
    assert svg.startswith("<svg") and rec["winner"] in svg
    html = (tmp_path / "run" / "report.html").read_text()
    assert "Device budget search" in html and "<svg" in html
    assert len(rec["ladder"]) == len(budget_search.LADDER)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["budget_search"]["winner"] == rec["winner"]


def test_distill_reports_teacher_twin_and_student(folder, tmp_path):
    from edgemaker.pipeline import train_run

    options = ClassifierOptions(model=ModelOptions(backbone="small_cnn", input_size=32, width=8),
                                hparams=HParams(epochs=5), augmentation=AugmentationOptions(views=1))
    m = train_run(folder, tmp_path / "run", options, formats=["onnx-fp32"], distill=True)
    d = m["distill"]
    assert d["teacher"] == "efficientnet_lite0" and d["student"] == "small_cnn@32"
    for key in ("teacher", "twin", "distilled"):
        assert 0.0 <= d[f"{key}_test_accuracy"] <= 1.0 and 0.0 <= d[f"{key}_val_accuracy"] <= 1.0
    assert d["kept"].startswith(("distilled", "from-scratch"))
    if d["distilled_val_accuracy"] != d["twin_val_accuracy"]:  # a tie goes to the lower validation loss
        assert (d["distilled_val_accuracy"] > d["twin_val_accuracy"]) == (d["kept"] == "distilled")
    assert "Distillation" in (tmp_path / "run" / "report.html").read_text()
