"""One training loop for every trainer: epochs, early stopping on validation, the best state restored.

The model-specific parts come in as callbacks (one epoch of updates, a validation score, a copy of
the weights), so the numpy softmax head and the torch networks (from scratch, transfer,
distillation, fine-tuning, budget fine-tuning) stop, choose and restore by one rule: validation
accuracy first, lower loss on ties, patience counted in epochs without a better score. A leaf:
numpy only at import, torch imported by the torch helpers when they are called.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float | None  # None for epoch 0: the starting weights scored before any training
    train_accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None


@dataclass
class Fit:
    """What a loop did: every epoch's record, the epoch whose weights were kept (0: the starting
    weights were never beaten) and its (validation accuracy, -loss), None without validation."""

    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_score: tuple[float, float] | None = None
    stopped_early: bool = False


def train_epochs(
    epochs: int,
    train_epoch: Callable[[int], tuple[float, float] | None],
    validate: Callable[[], tuple[float, float]] | None = None,
    patience: int | None = None,
    snapshot: Callable[[], Any] | None = None,
    restore: Callable[[Any], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    score_start: bool = False,
    min_delta: float = 0.0,
) -> Fit:
    """Run `train_epoch(epoch)` (-> (train loss, train accuracy) or None) for epochs 1..`epochs`.

    With `validate` (-> (accuracy, loss)): after each epoch the score (accuracy, -loss) is compared with
    the best so far; a better one takes `snapshot()`, and `patience` epochs in a row without one stop
    the loop; at the end `restore(best snapshot)`. `score_start`: the starting weights are scored
    first as epoch 0 and kept unless an epoch beats them (fine-tuning from a trained head).
    Without `validate` every epoch runs and the last weights are the result.
    `on_epoch(record)` follows every epoch (progress, live charts), before the stopping check."""
    fit = Fit()
    best_score, best_state, waited = (-1.0, -np.inf), None, 0
    if validate is not None and score_start:
        accuracy, loss = validate()
        best_score = (accuracy, -loss)
        best_state = snapshot() if snapshot is not None else None
        fit.history.append(EpochRecord(0, None, None, loss, accuracy))
    for epoch in range(1, epochs + 1):
        trained = train_epoch(epoch)
        loss, accuracy = trained if trained is not None else (None, None)
        record = EpochRecord(epoch, loss, accuracy, None, None)
        if validate is not None:
            record.val_accuracy, record.val_loss = validate()
            score = (record.val_accuracy, -record.val_loss)
            if _better(score, best_score, min_delta):
                best_score, fit.best_epoch, waited = score, epoch, 0
                best_state = snapshot() if snapshot is not None else None
            else:
                waited += 1
        fit.history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        if validate is not None and patience is not None and waited >= patience:
            fit.stopped_early = epoch < epochs
            break
    if validate is None:
        fit.best_epoch = fit.history[-1].epoch if fit.history else 0
        return fit
    fit.best_score = best_score
    if best_state is not None and restore is not None:
        restore(best_state)
    return fit


def _better(score: tuple[float, float], best: tuple[float, float], min_delta: float) -> bool:
    """(accuracy, -loss) beats the best: a higher accuracy, or the same with a loss lower by more than min_delta."""
    if score[0] != best[0]:
        return score[0] > best[0]
    return score[1] > best[1] + min_delta


def seeded(seed: int, with_torch: bool = False) -> np.random.Generator:
    """The loop's numpy generator for `seed`; `with_torch`: torch's global generator seeded too
    (weight initialisation, dropout), so one seed fixes the whole run."""
    if with_torch:
        import torch

        torch.manual_seed(seed)
    return np.random.default_rng(seed)


@contextmanager
def torch_threads(n: int | None):
    """torch on `n` threads inside the block (None: as it is), restored after."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def state_copy(module) -> dict:
    """A detached copy of a torch module's state (a snapshot the loop can restore with load_state_dict)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def descend(optimizer, loss, scheduler=None) -> None:
    """One optimisation step on `loss` (and one scheduler step, when the rate follows the steps)."""
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
