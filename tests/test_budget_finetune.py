"""The budget search's finalists fine-tuned (tasks/budget_finetune.py): the trunk trains on a tiny
generated set, the graph (so the predicted footprint) is unchanged, and a tuned model is kept only
when validation improves."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
from conftest import lite0_64_budget_search

from edgemaker.tasks import budget_finetune
from edgemaker.tasks.options import ClassifierOptions

MAX_FLASH, MAX_RAM = 30_000, 140_000  # Lite0 cut after blocks 1 and 2 at 64 px fit (predicted 8.5 and 20.3 kB)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One budget search on generated images (64 px only, no small_cnn), finalists fine-tuned."""
    return lite0_64_budget_search(tmp_path_factory.mktemp("budget_ft"), 3, 8, MAX_FLASH, MAX_RAM,
                                  {(budget_finetune, "EPOCHS"): 4}, finalists=2)


def test_finalists_are_fine_tuned_within_the_budget(searched):
    clf, record, _, _, _ = searched
    ft = record.fine_tune
    assert ft is not None and [e["targets"] for e in ft["finalists"]] == ["labels", "labels", "teacher"]
    assert ft["teacher_val_accuracy"] is not None  # the best finalist tuned again on the full model's targets
    names = {c.name: c for c in record.candidates}
    for entry in ft["finalists"]:
        c = names[entry["name"]]
        assert c.fits and c.width is None  # only fitting truncated candidates are tuned
        assert 1 <= entry["epochs_run"] <= 4 and 1 <= entry["blocks"] <= budget_finetune.LAST_BLOCKS
        assert entry["weights"].endswith(".pth")
    winner = names[record.winner]
    assert winner.fits and winner.predicted["flash_bytes"] <= MAX_FLASH and winner.predicted["ram_bytes"] <= MAX_RAM
    assert clf.spec.name == winner.backbone and clf.spec.image.size == winner.size  # same graph, same footprint
    if ft["kept"]:
        assert clf.spec.weights.kind == "file" and "fine-tuned" in record.why


def test_kept_only_when_validation_improves(searched):
    clf, record, splits, _, _ = searched
    ft = record.fine_tune
    head_only = (ft["head_only"]["val_accuracy"], -ft["head_only"]["val_loss"])
    kept = [e for e in ft["finalists"] if e["kept"]]
    ev = clf.evaluate(splits.val)
    assert ft["val_accuracy"] == pytest.approx(ev.accuracy, abs=1e-4)  # the model returned is the one scored
    if kept:
        assert len(kept) == 1 and ft["kept"] == kept[0]["name"] and kept[0]["best_epoch"] > 0
        assert (kept[0]["val_accuracy"], -kept[0]["val_loss"]) > head_only
        assert all((e["val_accuracy"], -e["val_loss"]) <= (kept[0]["val_accuracy"], -kept[0]["val_loss"])
                   for e in ft["finalists"])
    else:
        assert all((e["val_accuracy"], -e["val_loss"]) <= head_only for e in ft["finalists"])
        assert clf.spec.weights.kind != "file"


def test_a_worse_tuned_trunk_is_not_kept(searched, monkeypatch):
    """A tune that hurts validation (its head scrambled) leaves the head-only winner in place."""
    _, record, splits, options, cache = searched
    from edgemaker.progress import SilentProgress
    from edgemaker.tasks.classifier import ImageClassifier

    real = budget_finetune.tune

    def hurt(base, *args, **kwargs):
        tuned, summary = real(base, *args, **kwargs)
        head = copy.copy(tuned.head)
        head.coef_ = np.roll(head.coef_, 1, axis=0)  # every class's weights given to the next class
        head.intercept_ = np.roll(head.intercept_, 1)
        tuned.head = head
        return tuned, summary

    monkeypatch.setattr(budget_finetune, "tune", hurt)
    base = copy.copy(record)
    base.winner = next(e["name"] for e in record.fine_tune["finalists"])
    # The head-only winner with its head chosen on the validation split (cv_folds=0), as the search screened
    # it: on these 24 images the cross-validated head refitted on train can score 0 on validation, and a
    # start with nothing to lose cannot show that a worse tune is declined.
    start = ImageClassifier.create(splits.train, splits.val, ClassifierOptions(
        model=options.model.__class__(backbone=base.winner.split("@")[0], input_size=64),
        hparams=replace(options.hparams, cv_folds=0), augmentation=options.augmentation,
        cache_dir=options.cache_dir),
        SilentProgress(), cache)
    kept, report = budget_finetune.improve(ImageClassifier, base, start, splits.train, splits.val, options,
                                           SilentProgress(), cache, n=1, epochs=2)
    assert report["kept"] is None and kept is start
    assert report["finalists"][0]["val_accuracy"] < report["head_only"]["val_accuracy"] or \
        report["finalists"][0]["val_loss"] > report["head_only"]["val_loss"]
