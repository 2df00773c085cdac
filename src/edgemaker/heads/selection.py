"""Head settings chosen on the validation split, a few cheap fits on the cached embeddings.

Why: one fixed recipe loses to a plain logistic-regression probe on some data (zoom/crop views can
erase the cue that tells look-alike classes apart; the right regularisation depends on the data).
The search is staged (one setting at a time, the others at their current best) so it costs a handful
of fits; settings the user gave explicitly are never searched. Candidates are ranked by validation
accuracy; an accuracy tie goes to the lower validation loss, except between two label-smoothing
values: smoothing raises the log loss by design (it trains the head to be less sure), so there the
loss says nothing about which head is better, and the tie keeps the earlier candidate (the default
comes first).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .softmax import SoftmaxHead

# (setting, values tried in order: the first is the default). "views": train on the clean embedding
# and the augmented views ("augmented") or on the clean embedding only ("clean"). Weight decay is
# AdamW's decoupled one: 1e-2 and 1e-1 gave the very same heads as 1e-4 on caltech-hard40 and
# esc10-dev9 (early stopping ends training first), so the grid is "almost none" or "strong".
STAGES: tuple[tuple[str, tuple], ...] = (
    ("views", ("augmented", "clean")),
    ("weight_decay", (1e-4, 1.0)),
    ("label_smoothing", (0.1, 0.0)),
)
DEFAULTS = {name: values[0] for name, values in STAGES}


@dataclass
class Trial:
    settings: dict
    val_accuracy: float
    val_loss: float
    best_epoch: int
    seconds: float

    def to_dict(self) -> dict:
        return {**self.settings, "val_accuracy": round(self.val_accuracy, 4), "val_loss": round(self.val_loss, 4),
                "best_epoch": self.best_epoch, "seconds": round(self.seconds, 2)}


@dataclass
class HeadSelection:
    """What was tried and what won; `chosen` holds every setting, searched or given."""

    chosen: dict
    searched: list[str]
    trials: list[Trial] = field(default_factory=list)
    seconds: float = 0.0
    reused: bool = False  # the trials are an identical earlier search's (SelectionMemo); one fit was made

    def to_dict(self) -> dict:
        return {"chosen": self.chosen, "searched": self.searched, "seconds": round(self.seconds, 2),
                "reused": self.reused, "summary": self.summary(), "candidates": [t.to_dict() for t in self.trials]}

    @classmethod
    def from_dict(cls, d: dict) -> HeadSelection:
        keys = ("val_accuracy", "val_loss", "best_epoch", "seconds")
        trials = [Trial({k: v for k, v in t.items() if k not in keys}, t["val_accuracy"], t["val_loss"],
                        t["best_epoch"], t["seconds"]) for t in d["candidates"]]
        return cls(dict(d["chosen"]), list(d["searched"]), trials, d["seconds"])

    def summary(self) -> str:
        """One line for the console and the report."""
        if not self.searched:  # all given by the user, or no validation split to choose on
            return "head settings (none searched): " + ", ".join(f"{k} {v}" for k, v in self.chosen.items())
        chosen = ", ".join(f"{k} {self.chosen[k]}" for k in self.searched)
        best = next(t for t in self.trials if t.settings == self.chosen)
        how = ("the same search on the same embeddings earlier, reused" if self.reused
               else f"{len(self.trials)} fits, {self.seconds:.1f} s")
        return f"head settings by validation ({how}): {chosen} (val accuracy {best.val_accuracy:.3f})"


class SelectionMemo:
    """Searches already made, by a digest of everything they depend on (embeddings, labels, options,
    seed, grid): a retrain on unchanged data and settings fits the chosen head once instead of
    repeating every candidate (the choice is a deterministic function of those inputs)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def get(self, key: str) -> HeadSelection | None:
        try:
            selection = HeadSelection.from_dict(json.loads((self.folder / f"{key}.json").read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent or unreadable: search again
        selection.reused = True
        return selection

    def put(self, key: str, selection: HeadSelection) -> None:
        from ..atomic import write_json

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_json(self.folder / f"{key}.json", selection.to_dict())
        except OSError:
            pass  # a read-only cache only costs the next retrain its search


def _better(candidate: Trial, best: Trial) -> bool:
    if candidate.val_accuracy != best.val_accuracy:
        return candidate.val_accuracy > best.val_accuracy
    if candidate.settings.get("label_smoothing") != best.settings.get("label_smoothing"):
        return False  # log losses of heads trained with different smoothing are not comparable
    return candidate.val_loss < best.val_loss


def select_head(
    fit: Callable[[dict], SoftmaxHead],
    score: Callable[[SoftmaxHead], tuple[float, float]],
    given: dict,
    stages: Sequence[tuple[str, tuple]] = STAGES,
    memo: tuple[SelectionMemo, str] | None = None,
) -> tuple[SoftmaxHead, HeadSelection]:
    """Fit `fit(settings)` for the staged candidates, score each with `score(head)` -> (val accuracy,
    val loss), and return the best head with the record. `given`: settings fixed by the user (or
    not applicable, e.g. views when there is no augmentation); they are not searched. `memo`: where
    an identical search is remembered (store, key); the caller's key must cover every input of it."""
    start = time.perf_counter()
    if memo is not None and (known := memo[0].get(memo[1])) is not None:
        head = fit(known.chosen)
        known.seconds = time.perf_counter() - start
        return head, known
    settings = {**DEFAULTS, **given}
    searched = [name for name, _ in stages if name not in given]
    selection = HeadSelection(settings, searched)
    tried: dict[tuple, tuple[Trial, SoftmaxHead]] = {}

    def trial(candidate: dict) -> tuple[Trial, SoftmaxHead]:
        key = tuple(sorted(candidate.items()))
        if key not in tried:
            t0 = time.perf_counter()
            head = fit(candidate)
            accuracy, loss = score(head)
            record = Trial(dict(candidate), accuracy, loss, int(head.best_epoch_), time.perf_counter() - t0)
            selection.trials.append(record)
            tried[key] = (record, head)
        return tried[key]

    best = trial(settings)
    for name, values in stages:
        if name in given:
            continue
        for value in values:
            candidate = trial({**best[0].settings, name: value})
            if _better(candidate[0], best[0]):
                best = candidate
    selection.chosen = dict(best[0].settings)
    selection.seconds = time.perf_counter() - start
    if memo is not None:
        memo[0].put(memo[1], selection)
    return best[1], selection
