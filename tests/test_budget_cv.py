"""The budget search's finalists re-ranked by k-fold CV over train + val (tasks/budget_cv.py)."""

from __future__ import annotations

import pytest
from conftest import make_image_folder

from edgemaker.data.splits import SplitOptions, make_splits
from edgemaker.data.validate import validate_folder
from edgemaker.evaluate.budget_report import report_section
from edgemaker.progress import SilentProgress
from edgemaker.tasks import budget_cv, budget_search
from edgemaker.tasks.options import AugmentationOptions, ClassifierOptions, HParams


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    folder = make_image_folder(tmp_path_factory.mktemp("budget_cv") / "data", per_class=30)
    return make_splits(validate_folder(folder), SplitOptions(seed=0))


def _search(splits, monkeypatch, cv_folds, refit_on_val=False):
    from edgemaker.tasks.classifier import ImageClassifier

    monkeypatch.setattr(budget_search, "SIZES", (64,))
    monkeypatch.setattr(budget_search, "SMALL_CNN", ())
    monkeypatch.setattr(budget_search, "MOBILENET_V1_SIZES", ())
    options = ClassifierOptions(hparams=HParams(epochs=6, cv_folds=cv_folds), augmentation=AugmentationOptions(views=1))
    return budget_search.search(ImageClassifier, splits.train, splits.val, options, SilentProgress(),
                                ImageClassifier.open_cache(options), 400_000, 256_000, refit_on_val=refit_on_val)


def test_finalists_are_reranked_by_cross_validation(splits, monkeypatch):
    clf, record = _search(splits, monkeypatch, 4, refit_on_val=True)
    assert clf.head_selection.refit.startswith("refitted on train + val")  # as edgemaker train's plain path
    fitting = [c for c in record.candidates if c.fits and c.val_accuracy is not None]
    top = sorted(fitting, key=budget_search.rank, reverse=True)[:budget_cv.FINALISTS]
    assert len(top) == budget_cv.FINALISTS < len(fitting)
    for c in top:
        assert c.cv["folds"] == 4 and len(c.cv["fold_accuracies"]) == 4 and 0 <= c.cv["mean"] <= 1
        assert c.cv["mean"] == pytest.approx(sum(c.cv["fold_accuracies"]) / 4, abs=1e-3)
    assert not any(c.cv for c in fitting if c not in top)  # the others stay validation-only
    winner = next(c for c in record.candidates if c.name == record.winner)
    assert winner is max(top, key=budget_cv.cv_rank)
    assert record.why.startswith(f"best 4-fold cross-validation accuracy over train + val {winner.cv['mean']:.3f}")
    assert record.to_dict()["candidates"][record.candidates.index(winner)]["cv"]["folds"] == 4
    html = "".join(report_section(record.to_dict()))  # the evidence in the report's candidate table
    assert f"{winner.cv['mean']:.4f} (sd {winner.cv['std']:.4f}, 4 folds)" in html


def test_without_folds_the_validation_split_decides(splits, monkeypatch):
    clf, record = _search(splits, monkeypatch, 0)
    fitting = [c for c in record.candidates if c.fits and c.val_accuracy is not None]
    assert not any(c.cv for c in record.candidates)
    assert record.winner == max(fitting, key=budget_search.rank).name
    assert record.why.startswith("highest validation accuracy")
