"""MobileNetV1 0.25/0.5 in the budget search: every cut predicted, embedded in one pass, the winner
exported to a real int8 file that fits, its last blocks fine-tuned; --grayscale's one-channel twin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder

from edgemaker.backbones import get_builder, get_spec
from edgemaker.backbones import mobilenet_v1 as v1
from edgemaker.backbones.weights import resolve_weights
from edgemaker.data.splits import SplitOptions, make_splits
from edgemaker.data.validate import validate_folder
from edgemaker.tasks import budget_finetune, budget_search
from edgemaker.tasks.options import AugmentationOptions, ClassifierOptions, HParams, ModelOptions

torch = pytest.importorskip("torch")
MAX_FLASH, MAX_RAM = 120_000, 80_000  # MobileNetV1 0.25 cut after 7 or 8 blocks at 96 px


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("mnv1") / "data", per_class=8, seed=5)


def _only_mobilenet(monkeypatch, sizes=(96,)):
    monkeypatch.setattr(budget_search, "SIZES", ())
    monkeypatch.setattr(budget_search, "SMALL_CNN", ())
    monkeypatch.setattr(budget_search, "MOBILENET_V1_SIZES", sizes)


def test_every_cut_in_one_pass_equals_each_cut_and_names_round_trip():
    from edgemaker.features.depths import AllDepthsBackbone

    both = AllDepthsBackbone("mobilenet_v1_025", 96, 1)
    batch = np.random.default_rng(1).integers(0, 256, (2, 96, 96, 3), np.uint8)
    parts = both.split(both.embed(batch))
    assert [p.shape[1] for p in parts] == v1.channels(0.25) and len(parts) == v1.BLOCKS
    for k in (2, 9, 13):
        spec = v1.cut_spec("025", k, 96)
        module = get_builder(spec.name)(spec, resolve_weights(spec.weights))
        x = (torch.from_numpy(batch).permute(0, 3, 1, 2).float() - 127.5) / 127.5
        with torch.no_grad():
            np.testing.assert_allclose(parts[k - 1], module(x).numpy(), rtol=1e-4, atol=1e-4)
    assert v1.parse_name("mobilenet_v1_050_gray_k4") == ("050", 4, True)
    assert v1.gray_twin("mobilenet_v1_025_k7") == "mobilenet_v1_025_gray_k7"
    assert v1.gray_twin("efficientnet_lite0") == "efficientnet_lite0"
    assert get_spec("mobilenet_v1_050_k3").feature_dim == 64  # registered on first use, by name


def test_gray_twin_is_the_rgb_network_on_grey_images():
    rgb, gray = get_spec("mobilenet_v1_025_k9"), get_spec("mobilenet_v1_025_gray_k9")
    assert gray.cache_id != rgb.cache_id and gray.parameters == rgb.parameters - 2 * 9 * 8
    a = get_builder(rgb.name)(rgb, resolve_weights(rgb.weights))
    b = get_builder(gray.name)(gray, resolve_weights(gray.weights))
    assert sum(p.numel() for p in b.parameters()) == gray.parameters
    grey = torch.rand(2, 1, 96, 96) * 2 - 1
    colour = torch.rand(2, 3, 96, 96) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(b(grey.expand(-1, 3, -1, -1)), a(grey.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(b(colour), a(colour.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)),
                                   rtol=1e-4, atol=1e-4)  # colour never reaches it


def test_budget_search_picks_a_mobilenet_cut_that_fits_its_real_int8_file(folder, tmp_path, monkeypatch):
    """The winner is exported to full int8 (LiteRT, and TFLite Micro when installed): the measured flash
    and arena fit the budget, and the prediction is close to the measurement."""
    pytest.importorskip("litert_torch")
    _only_mobilenet(monkeypatch)
    from edgemaker.pipeline import train_run

    options = ClassifierOptions(hparams=HParams(epochs=4), augmentation=AugmentationOptions(views=1),
                                cache_dir=tmp_path / "cache")
    m = train_run(folder, tmp_path / "run", options, formats=["onnx-fp32"], max_flash=MAX_FLASH, max_ram=MAX_RAM)
    rec = m["budget_search"]
    assert rec["winner"].startswith("mobilenet_v1_025_k") and rec["winner"].endswith("@96")
    conf = rec["confirmed"]
    assert conf["fits"] and conf["flash_bytes"] <= MAX_FLASH and conf["ram_bytes"] <= MAX_RAM
    assert abs(conf["flash_bytes"] - conf["predicted"]["flash_bytes"]) <= 0.02 * conf["flash_bytes"], conf
    assert abs(conf["ram_bytes"] - conf["predicted"]["ram_bytes"]) <= 0.1 * conf["ram_bytes"], conf
    assert conf["macs"] == conf["predicted"]["macs"]
    tflm = next((e["tflm"] for e in m["exports"] if e.get("tflm")), None)
    if tflm and tflm["status"] == "ok":  # TFLite Micro installed: it runs the file as LiteRT does
        assert tflm["agreement_with_litert"] >= 0.99


def test_a_mobilenet_finalist_is_fine_tuned_and_reloads(folder, tmp_path, monkeypatch):
    from edgemaker.progress import SilentProgress
    from edgemaker.tasks.classifier import ImageClassifier

    _only_mobilenet(monkeypatch)
    monkeypatch.setattr(budget_finetune, "EPOCHS", 2)
    monkeypatch.setattr(budget_finetune, "TEACHER", False)
    splits = make_splits(validate_folder(folder), SplitOptions(seed=0))
    options = ClassifierOptions(model=ModelOptions(grayscale="on"), hparams=HParams(epochs=4),
                                augmentation=AugmentationOptions(views=1), cache_dir=tmp_path / "cache")
    cache = ImageClassifier.open_cache(options)
    clf, record = budget_search.search(ImageClassifier, splits.train, splits.val, options, SilentProgress(), cache,
                                       MAX_FLASH, MAX_RAM, finalists=1)
    assert all("_gray" in c.backbone for c in record.candidates)  # --grayscale on: the one-channel twins
    entry = record.fine_tune["finalists"][0]
    assert entry["name"].startswith("mobilenet_v1_025_gray_k") and entry["weights"].endswith(".pth")
    # the tuned trunk (a .pth of the whole network) loads back through the registry's builder
    tuned = get_spec(entry["name"].split("@")[0])
    net = get_builder(tuned.name)(tuned, Path(entry["weights"]))
    assert net.net.net.stem.conv.in_channels == 1
    assert clf.evaluate(splits.val).accuracy == pytest.approx(record.fine_tune["val_accuracy"], abs=1e-4)
