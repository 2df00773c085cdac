"""`--fine-tune auto` on a small validation split: accepted only when it beats head-only across folds.

Generated 64 px images keep the tail (last 3 blocks at 2x2) small. The accepted case is built so the
frozen features cannot separate the classes and training can: the trunk's last convolution is made
rank one (every output channel sees the same single direction of its input), which the fine-tuned
blocks can undo. Declined: the same task with a recipe that trains nothing, and easy data where head-only
is already right on every held-out sample (no fold is fine-tuned then).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import make_image_folder
from edgemaker.backbones.stages import stages
from edgemaker.data.splits import SplitOptions, make_splits
from edgemaker.data.validate import validate_folder
from edgemaker.evaluate.report import fine_tune_section
from edgemaker.tasks import finetune_paired
from edgemaker.tasks.classifier import ImageClassifier
from edgemaker.tasks.options import ClassifierOptions, FineTuneOptions, HParams, ModelOptions

SIZE = 64


def _options(cache, hparams: dict | None = None, **ft) -> ClassifierOptions:
    tune = FineTuneOptions(**{"depth": "auto", "paired_folds": 3, "paired_epochs": 8, "paired_views": 2, **ft})
    hp = HParams(**{"label_smoothing": 0.0, "batch_size": 8, **(hparams or {})})
    return ClassifierOptions(model=ModelOptions(input_size=SIZE), hparams=hp,
                             threads=1, cache_dir=cache, fine_tune=tune)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("paired")
    return base, make_splits(validate_folder(make_image_folder(base / "data", per_class=10)), SplitOptions(seed=0))


def _check_record(ft: dict, n_samples: int, folds: int) -> dict:
    assert ft["path"] == "paired folds" and "validation samples" in ft["path_reason"]
    paired = ft["paired"]
    assert paired["folds"] == folds and paired["samples"] == n_samples
    (depth,) = paired["depths"]
    assert depth["k"] == 3 and len(depth["folds"]) == folds
    assert sum(r["held_out"] for r in depth["folds"]) == n_samples  # every sample held out once
    done = [r for r in depth["folds"] if r["gain"] is not None]
    assert done, "at least one fold fine-tuned"
    for r in depth["folds"]:
        assert r["fit"] + r["held_out"] == n_samples and 0 <= r["head_only"] <= 1
    for r in done:
        assert r["gain"] == pytest.approx(r["fine_tuned"] - r["head_only"], abs=1e-3)
    gains = [r["gain"] for r in done]
    assert depth["mean_gain"] == pytest.approx(np.mean(gains), abs=1e-3)
    if len(gains) > 1:
        assert depth["se_gain"] == pytest.approx(np.std(gains, ddof=1) / np.sqrt(len(gains)), abs=1e-3)
    samples = depth["paired_samples"]  # the decision's evidence: every held-out sample of the folds run, paired
    assert samples["n"] == sum(r["held_out"] for r in done)
    assert samples["mean_gain"] == pytest.approx((samples["fixed"] - samples["broken"]) / samples["n"], abs=1e-3)
    weighted = sum(r["gain"] * r["held_out"] for r in done) / samples["n"]
    assert samples["mean_gain"] == pytest.approx(weighted, abs=2e-3)  # the folds' gains, weighted by their size
    assert depth["accepted"] == (samples["accepted"] and not depth["reason"].startswith("stopped"))
    assert ft["extra_s"] > 0 and ft["cpu_s"] > 0
    json.dumps(ft)  # goes into metrics.json as it is
    return depth


def test_folds_are_stratified_and_seeded():
    labels = np.array([0] * 7 + [1] * 5 + [2] * 3)
    folds = finetune_paired.stratified_folds(labels, 3, seed=1)
    for c in range(3):
        counts = np.bincount(folds[labels == c], minlength=3)
        assert counts.max() - counts.min() <= 1
    assert np.bincount(folds).tolist() == [5, 5, 5]
    assert np.array_equal(folds, finetune_paired.stratified_folds(labels, 3, seed=1))


def test_decision_needs_a_positive_gain_beyond_its_standard_error():
    assert finetune_paired.decide([0.10, 0.12, 0.08])[0]
    assert not finetune_paired.decide([0.0, -0.05, 0.02])[0]  # mean not positive
    accept, mean, std, se, reason = finetune_paired.decide([0.30, -0.20, -0.05])  # positive, within noise
    assert not accept and 0 < mean <= se and "standard error" in reason


def test_the_sample_level_decision_uses_every_held_out_sample():
    # 3 folds that agree by chance (fold SE tiny) but rest on 6 fixed vs 4 broken samples of 300: not accepted
    fixed_broken = np.array([1] * 6 + [-1] * 4 + [0] * 290)
    accept, mean, _, se, reason = finetune_paired.decide([], fixed_broken)
    assert finetune_paired.decide([0.0067, 0.0066, 0.0067])[0]  # what the fold means alone would say
    assert not accept and mean == pytest.approx(2 / 300) and se == pytest.approx(np.std(fixed_broken, ddof=1) / np.sqrt(300))
    assert "300 held-out samples" in reason
    record = finetune_paired.paired_samples(np.array([1] * 30 + [-1] * 5 + [0] * 265))
    assert record["accepted"] and (record["n"], record["fixed"], record["broken"]) == (300, 30, 5)
    assert record["mean_gain"] == pytest.approx(25 / 300, abs=1e-4) and 0 < record["se_gain"] < record["mean_gain"]


def _rank_one(monkeypatch):
    """Frozen features that cannot separate the classes: the last convolution made rank one."""
    import torch

    real = finetune_paired.trunk

    def rank_one(spec):
        net = real(spec)
        with torch.no_grad():
            w = stages(net).head[0].weight  # (out, in, 1, 1): every output channel a multiple of one input direction
            scale = torch.randn(w.shape[0], generator=torch.Generator().manual_seed(0))
            w.copy_(scale[:, None, None, None] * w[0][None])
        return net

    monkeypatch.setattr(finetune_paired, "trunk", rank_one)


def test_no_fold_is_fine_tuned_when_head_only_is_right_on_every_held_out_sample(setup, monkeypatch):
    base, splits = setup
    calls = []
    monkeypatch.setattr(finetune_paired, "train_recipe", lambda *a, **k: calls.append(1))
    clf = ImageClassifier.create(splits.train, splits.val, _options(base / "cache"))
    ft = clf.fine_tune
    (depth,) = ft["paired"]["depths"]
    assert [r["head_only"] for r in depth["folds"]] == [1.0, 1.0, 1.0]  # these patterns are easy
    assert not calls and depth["reason"].startswith("stopped after 0 of 3 folds") and not depth["accepted"]
    assert ft["chosen_k"] == 0 and clf.head_only is clf and clf.spec.weights.kind == "pypi"
    json.dumps(ft)


def test_a_recipe_that_does_not_improve_on_head_only_is_declined(setup, monkeypatch):
    base, splits = setup
    _rank_one(monkeypatch)  # room to gain ...
    monkeypatch.setattr(finetune_paired, "TRUNK_LR_SCALE", 0.0)  # ... but the recipe trains nothing
    monkeypatch.setattr(finetune_paired, "HEAD_LR_SCALE", 0.0)
    clf = ImageClassifier.create(splits.train, splits.val, _options(base / "cache"))
    ft = clf.fine_tune
    depth = _check_record(ft, len(splits.train) + len(splits.val), 3)
    assert all(r["gain"] == 0 for r in depth["folds"]) and not depth["accepted"]
    assert "not positive" in depth["reason"] and ft["paired"]["decision"] == "head only"
    assert ft["chosen_k"] == 0 and clf.head_only is clf and clf.spec.weights.kind == "pypi"


def test_fine_tuning_that_recovers_what_frozen_features_lack_is_accepted(setup, monkeypatch):
    base, splits = setup
    _rank_one(monkeypatch)
    # The softmax head (the recipe starts from it); the probe's folded standardisation is another start.
    clf = ImageClassifier.create(splits.train, splits.val, _options(base / "cache", hparams={"head": "softmax"}))
    ft = clf.fine_tune
    depth = _check_record(ft, len(splits.train) + len(splits.val), 3)
    assert depth["accepted"] and depth["mean_gain"] > depth["se_gain"] > 0
    assert depth["mean_head_only"] < 0.7  # the rank-one features cannot separate three classes
    assert ft["chosen_k"] == 3 and ft["paired"]["decision"] == "fine-tuned"
    assert clf.spec.weights.kind == "file" and clf.head_only is not clf
    assert ft["fine_tuned"]["val_accuracy_onnx"] is not None  # the saved trunk runs as an ordinary backbone
    assert ft["refit"] == {"on": "train", "samples": len(splits.train), "epochs": 8}


def test_the_accepted_recipe_is_refitted_on_train_so_validation_stays_held_out_for_int8(setup, monkeypatch, tmp_path):
    base, splits = setup
    _rank_one(monkeypatch)
    sizes = []
    real = finetune_paired.train_recipe

    def spy(tail, x, y, *a, **k):
        sizes.append(len(y))
        return real(tail, x, y, *a, **k)

    monkeypatch.setattr(finetune_paired, "train_recipe", spy)
    # Even where the run refits its head on all the labelled data, the fine-tuned blocks do not see validation.
    clf = ImageClassifier.create(splits.train, splits.val, _options(
        base / "cache", hparams={"head": "softmax", "refit_on_val": True}))
    ft = clf.fine_tune
    n = len(splits.train) + len(splits.val)
    assert ft["chosen_k"] == 3 and ft["refit"] == {"on": "train", "samples": len(splits.train), "epochs": 8}
    assert sizes[-1] == len(splits.train) and all(s < n for s in sizes)
    assert ft["fine_tuned"]["val_accuracy"] is not None and not clf.trained_on_val
    assert "refitted on train (" in "".join(fine_tune_section(ft))
    assert clf.export_session(tmp_path / "export").validation.check_head is None  # validation is held out


def test_a_declined_fine_tune_ships_the_head_refitted_on_train_and_val(setup, monkeypatch):
    base, splits = setup
    monkeypatch.setattr(finetune_paired, "train_recipe", lambda *a, **k: pytest.fail("no fold should run"))
    train_only = ImageClassifier.create(splits.train, splits.val, _options(base / "cache"))
    clf = ImageClassifier.create(splits.train, splits.val, _options(base / "cache", hparams={"refit_on_val": True}))
    assert clf.fine_tune["chosen_k"] == 0 and clf.fine_tune["head_only"]["refit"] == "train + val"
    assert not train_only.head_selection.refit_on_val and clf.head_selection.refit_on_val
    assert "train + val" in clf.head_selection.refit
    assert "head-only model's head was refitted on train + val" in "".join(fine_tune_section(clf.fine_tune))
    assert not np.allclose(clf.head.coef_, train_only.head.coef_)  # fitted on more data
    assert clf.head.coef_.shape == train_only.head.coef_.shape


def test_folds_stop_when_the_gain_can_no_longer_be_positive():
    assert not finetune_paired.can_still_gain([], [1.0, 1.0, 1.0])  # head-only right everywhere: no fold runs
    assert not finetune_paired.can_still_gain([-0.3], [0.9, 0.9])  # -0.3 + 0.1 + 0.1 < 0
    assert finetune_paired.can_still_gain([0.0], [0.9, 0.9])


def test_a_large_validation_split_keeps_the_single_split_path(setup):
    base, splits = setup
    clf = ImageClassifier.create(splits.train, splits.val,
                                 _options(base / "cache", paired_below_val=1, candidates=(0, 1), epochs=1))
    ft = clf.fine_tune
    assert ft["path"] == "single split" and "large enough" in ft["path_reason"] and "paired" not in ft
