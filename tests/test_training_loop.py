"""The one training loop (training/loop.py): stopping, choosing and restoring by one rule."""

from __future__ import annotations

import numpy as np
import pytest

from edgemaker.training.loop import descend, seeded, state_copy, torch_threads, train_epochs


class Weights:
    """A stand-in model whose 'weights' are the epoch that last trained them."""

    def __init__(self) -> None:
        self.value = 0

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        self.value = epoch
        return 1.0 / epoch, 0.5

    def snapshot(self) -> int:
        return self.value

    def restore(self, state: int) -> None:
        self.value = state


def scripted(scores: dict[int, tuple[float, float]], w: Weights):
    return lambda: scores[w.value]


def test_patience_stops_and_the_best_epoch_is_restored():
    w = Weights()
    # accuracy peaks at epoch 3, then never beats it
    scores = {e: (min(e, 3) / 10 - (e > 3) * 0.01 * e, 1.0) for e in range(1, 21)}
    seen = []
    fit = train_epochs(20, w.train_epoch, scripted(scores, w), patience=4, snapshot=w.snapshot, restore=w.restore,
                       on_epoch=seen.append)
    assert [r.epoch for r in fit.history] == [1, 2, 3, 4, 5, 6, 7]  # 4 epochs without a better score after 3
    assert fit.stopped_early and fit.best_epoch == 3 and w.value == 3
    assert fit.best_score == pytest.approx((0.3, -1.0))
    assert seen == fit.history and fit.history[0].train_loss == 1.0 and fit.history[2].val_accuracy == pytest.approx(0.3)


def test_equal_accuracy_is_decided_by_the_lower_loss():
    w = Weights()
    scores = {1: (0.5, 0.9), 2: (0.5, 0.4), 3: (0.5, 0.6), 4: (0.5, 0.7)}
    fit = train_epochs(4, w.train_epoch, scripted(scores, w), patience=10, snapshot=w.snapshot, restore=w.restore)
    assert fit.best_epoch == 2 and w.value == 2 and not fit.stopped_early


def test_the_starting_weights_are_kept_when_no_epoch_beats_them():
    w = Weights()
    w.value = 100  # e.g. a trained head before fine-tuning
    scores = {100: (0.8, 0.5), **{e: (0.7, 0.4) for e in range(1, 6)}}
    fit = train_epochs(5, w.train_epoch, scripted(scores, w), patience=2, snapshot=w.snapshot, restore=w.restore,
                       score_start=True)
    assert fit.history[0].epoch == 0 and fit.history[0].train_loss is None
    assert fit.best_epoch == 0 and w.value == 100 and len(fit.history) == 3


def test_without_validation_every_epoch_runs_and_the_last_weights_stay():
    w = Weights()
    fit = train_epochs(6, w.train_epoch, patience=1, snapshot=w.snapshot, restore=w.restore)
    assert len(fit.history) == 6 and fit.best_epoch == 6 and w.value == 6 and fit.best_score is None


def _train(seed: int) -> np.ndarray:
    import torch

    rng = seeded(seed, with_torch=True)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32))
    y = (x[:, 0] > 0).long()
    xv, yv = x[:10], y[:10]

    def train_epoch(epoch: int):
        model.train()
        for idx in np.array_split(rng.permutation(40), 5):
            descend(opt, torch.nn.functional.cross_entropy(model(x[idx]), y[idx]))

    def validate():
        model.eval()
        with torch.no_grad():
            logits = model(xv)
        return float((logits.argmax(1) == yv).float().mean()), float(torch.nn.functional.cross_entropy(logits, yv))

    with torch_threads(1):
        train_epochs(8, train_epoch, validate, 3, lambda: state_copy(model), model.load_state_dict)
    return torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()


def test_one_seed_reproduces_a_torch_run_and_another_does_not():
    a, b, c = _train(1), _train(1), _train(2)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
