"""Whether the budget search trains its from-scratch image candidate (small_cnn), and when it gives up.

Why: every pretrained cut is screened in seconds on cached embeddings, while a network trained from
random weights costs epochs over decoded images (caltech-dev10, 2 shared cores: over 40 minutes at
the default 100 epochs). The pretrained cuts are therefore screened first, and the best of them by
validation (the leader) decides for small_cnn, by rules the search table states:
- not trained when the leader already scores 1.0 on validation: from scratch can at most tie it;
- otherwise trained for at most EPOCHS epochs with patience PATIENCE (`--backbone small_cnn` trains
  it alone for as long as --epochs says);
- given up from epoch CHECK on, as soon as its best validation accuracy so far trails the leader
  by more than GAP. On a few hundred photos a from-scratch CNN peaks early (caltech-dev10: best
  epoch 12 of 27, validation 0.851, where pretrained cuts of the same size score 0.90-1.00), so
  a large gap at epoch CHECK is not closed later.
Sounds are not gated: small_cnn_mel trains in minutes on log-mel windows and wins there (esc10-dev9).
Everything here reads validation, never the test split.
"""

from __future__ import annotations

from dataclasses import replace

from .options import ClassifierOptions

EPOCHS = 40
PATIENCE = 8
CHECK = 10
GAP = 0.10


class GaveUp(Exception):
    """Raised through the training loop's epoch report to stop a candidate that cannot plausibly win."""

    def __init__(self, epoch: int, best: float) -> None:
        super().__init__(f"gave up after epoch {epoch}")
        self.epoch, self.best = epoch, best


def skip_reason(leader_name: str | None, leader_accuracy: float | None) -> str | None:
    """Why a from-scratch candidate is not trained at all (None: train it)."""
    if leader_accuracy is not None and leader_accuracy >= 1.0:
        return (f"not trained: {leader_name} already scores {leader_accuracy:.3f} on validation, "
                "which a network trained from scratch can at most tie")
    return None


def capped(options: ClassifierOptions) -> ClassifierOptions:
    """The training settings of a from-scratch candidate: at most EPOCHS epochs, patience PATIENCE."""
    hp = options.hparams
    return replace(options, hparams=replace(hp, epochs=min(hp.epochs, EPOCHS), patience=min(hp.patience, PATIENCE)))


def gave_up_note(stop: GaveUp, leader_name: str, leader_accuracy: float) -> str:
    return (f"given up after epoch {stop.epoch}: best validation {stop.best:.3f} trails {leader_name} "
            f"({leader_accuracy:.3f}) by more than {GAP:.2f}")


class Watch:
    """A Progress that forwards everything and, after each epoch of the watched network (its tag),
    raises GaveUp once the rule above says the candidate cannot plausibly catch the leader."""

    def __init__(self, progress, tag: str, leader_accuracy: float | None) -> None:
        from ..progress import SilentProgress

        self.progress, self.tag, self.leader = progress or SilentProgress(), tag, leader_accuracy
        self.best = 0.0

    def bar(self, total: int, desc: str):
        return self.progress.bar(total, desc)

    def log(self, message: str) -> None:
        self.progress.log(message)

    def epoch(self, tag: str, record) -> None:
        self.progress.epoch(tag, record)
        if tag != self.tag or record.val_accuracy is None or self.leader is None:
            return
        self.best = max(self.best, record.val_accuracy)
        if record.epoch >= CHECK and self.best + GAP < self.leader:
            raise GaveUp(record.epoch, self.best)
