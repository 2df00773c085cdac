"""The budget search's rule for its from-scratch image candidate (tasks/scratch_gate.py): skipped
when the screened leader is perfect on validation, given up when it trails by more than GAP."""

from __future__ import annotations

import html

import pytest
from conftest import make_image_folder

from edgemaker.data.splits import SplitOptions, make_splits
from edgemaker.data.validate import validate_folder
from edgemaker.evaluate.budget_report import report_section
from edgemaker.heads.softmax import EpochRecord
from edgemaker.progress import SilentProgress
from edgemaker.tasks import budget_search, scratch_gate
from edgemaker.tasks.options import AugmentationOptions, ClassifierOptions, HParams


def _epoch(n: int, val: float) -> EpochRecord:
    return EpochRecord(n, 1.0, 0.5, 1.0, val)


def test_watch_gives_up_only_from_the_check_epoch_and_only_beyond_the_gap():
    leader = 0.9
    far = leader - scratch_gate.GAP - 0.05
    watch = scratch_gate.Watch(SilentProgress(), "small_cnn", leader)
    for n in range(1, scratch_gate.CHECK):
        watch.epoch("small_cnn", _epoch(n, far))  # too early to judge
    watch.epoch("softmax", _epoch(scratch_gate.CHECK, 0.0))  # another network's epochs are not watched
    with pytest.raises(scratch_gate.GaveUp) as stop:
        watch.epoch("small_cnn", _epoch(scratch_gate.CHECK, far))
    assert stop.value.epoch == scratch_gate.CHECK and stop.value.best == pytest.approx(far)

    close = scratch_gate.Watch(SilentProgress(), "small_cnn", leader)
    close.epoch("small_cnn", _epoch(1, leader - scratch_gate.GAP + 0.01))  # its best so far counts
    for n in range(2, scratch_gate.CHECK + 5):
        close.epoch("small_cnn", _epoch(n, far))


def test_capped_epochs_and_skip_rule():
    opts = scratch_gate.capped(ClassifierOptions(hparams=HParams(epochs=100, patience=15)))
    assert (opts.hparams.epochs, opts.hparams.patience) == (scratch_gate.EPOCHS, scratch_gate.PATIENCE)
    assert scratch_gate.capped(ClassifierOptions(hparams=HParams(epochs=3))).hparams.epochs == 3
    assert scratch_gate.skip_reason("a", 1.0).startswith("not trained: a already scores 1.000")
    assert scratch_gate.skip_reason("a", 0.99) is None and scratch_gate.skip_reason(None, None) is None


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    folder = make_image_folder(tmp_path_factory.mktemp("gate") / "data", per_class=30)
    return make_splits(validate_folder(folder), SplitOptions(seed=0))


@pytest.fixture
def small_space(monkeypatch):
    monkeypatch.setattr(budget_search, "SIZES", (64,))
    monkeypatch.setattr(budget_search, "SMALL_CNN", ((8, 32),))
    monkeypatch.setattr(budget_search, "MOBILENET_V1_SIZES", ())


class Epochs(SilentProgress):
    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def epoch(self, tag: str, record) -> None:
        self.seen.append((tag, record.epoch))


def _search(splits, progress):
    from edgemaker.tasks.classifier import ImageClassifier

    options = ClassifierOptions(hparams=HParams(epochs=6), augmentation=AugmentationOptions(views=1))
    clf, record = budget_search.search(ImageClassifier, splits.train, splits.val, options, progress,
                                       ImageClassifier.open_cache(options), 400_000, 256_000)
    scratch = next(c for c in record.candidates if c.width is not None and c.fits)
    leader = max((c for c in record.candidates if c.fits and c.width is None), key=budget_search.rank)
    return record, scratch, leader


def test_search_skips_from_scratch_when_the_leader_is_perfect(splits, small_space):
    progress = Epochs()
    record, scratch, leader = _search(splits, progress)
    assert leader.val_accuracy == 1.0  # the generated patterns are easy for the pretrained cuts
    assert scratch.val_accuracy is None and scratch.note.startswith(f"not trained: {leader.name}")
    assert not [e for e in progress.seen if e[0] == "small_cnn"]
    assert record.winner != scratch.name
    assert record.to_dict()["candidates"][record.candidates.index(scratch)]["note"] == scratch.note
    assert html.escape(scratch.note) in "".join(report_section(record.to_dict()))


def test_search_gives_up_on_from_scratch_and_says_so(splits, small_space, monkeypatch):
    monkeypatch.setattr(scratch_gate, "skip_reason", lambda *a: None)
    monkeypatch.setattr(scratch_gate, "CHECK", 2)
    monkeypatch.setattr(scratch_gate, "GAP", -1.0)  # every from-scratch epoch "trails": give up at CHECK
    progress = Epochs()
    record, scratch, leader = _search(splits, progress)
    assert [e for e in progress.seen if e[0] == "small_cnn"] == [("small_cnn", 1), ("small_cnn", 2)]
    assert scratch.val_accuracy is None and scratch.note.startswith("given up after epoch 2: best validation")
    assert leader.name in scratch.note and record.winner != scratch.name
