"""forked_map: cross-validation's head fits on forked processes. Results in order and equal to a
serial run, a child's exception raised in the parent, a dead child one clear error, no child left."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from edgemaker.parallel import can_fork, forked_map

pytestmark = pytest.mark.skipif(not can_fork(), reason="forked_map runs on Linux only")


def _children() -> set[int]:
    try:
        return {int(p) for p in open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split()}
    except OSError:
        return set()


def test_results_come_back_in_order_from_several_processes():
    before = _children()
    out = forked_map(lambda i: (i * i, os.getpid()), list(range(40)), workers=3)
    assert [v for v, _ in out] == [i * i for i in range(40)]
    pids = {p for _, p in out}
    assert os.getpid() not in pids and 1 <= len(pids) <= 3  # the work ran in children, not here
    assert _children() == before  # every child was reaped
    big = forked_map(lambda n: np.full((n, 1000), n, np.float32), [300, 5, 200], workers=2)  # > a pipe's buffer
    assert [b.shape for b in big] == [(300, 1000), (5, 1000), (200, 1000)] and float(big[0][-1, -1]) == 300.0


def test_a_childs_exception_is_raised_in_the_parent():
    def fn(i):
        if i == 3:
            raise ValueError(f"bad item {i}")
        return i

    with pytest.raises(ValueError, match="bad item 3"):
        forked_map(fn, list(range(6)), workers=2)


def test_a_child_that_dies_fails_the_call_with_one_clear_error():
    def fn(i):
        if i == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return i

    with pytest.raises(RuntimeError, match="worker process died.*signal 9"):
        forked_map(fn, [0, 1, 2], workers=2)


def test_cross_validation_on_processes_equals_it_on_one_thread(monkeypatch):
    from test_cv_selection import clip_set

    from edgemaker import parallel
    from edgemaker.heads import cv
    from edgemaker.heads.cv import cross_validate_heads, make_folds
    from edgemaker.heads.probe import ProbeHead
    from edgemaker.heads.softmax import SoftmaxHead

    samples, emb = clip_set(seed=3, per_class=12)
    labels = [s.label for s in samples]
    folds, _ = make_folds(labels, [str(s.path) for s in samples], 3, seed=0)
    jobs = [(lambda: SoftmaxHead(epochs=20, patience=5), "clean"), (lambda: ProbeHead(C=0.1), "clean")]
    serial = cross_validate_heads(jobs, emb, labels, folds, workers=1)
    calls = []
    monkeypatch.setattr(cv, "forked_map", lambda *a: calls.append(1) or parallel.forked_map(*a))
    assert len(emb.vectors) * 6 < cv.FORK_MIN_ROW_FITS  # so small a search stays on threads ...
    threaded = cross_validate_heads(jobs, emb, labels, folds, workers=2)
    assert not calls
    monkeypatch.setattr(cv, "FORK_MIN_ROW_FITS", 0)  # ... unless told otherwise
    forked = cross_validate_heads(jobs, emb, labels, folds, workers=2)
    assert calls == [1]
    for a, b in zip(serial, threaded):
        np.testing.assert_array_equal(a.oof, b.oof)
    for a, b in zip(serial, forked):
        assert a.accuracies == b.accuracies and a.best_epochs == b.best_epochs
        np.testing.assert_array_equal(a.oof, b.oof)


def test_the_refit_seeds_on_processes_give_the_same_head(monkeypatch):
    from test_cv_selection import clip_set

    from edgemaker import parallel
    from edgemaker.heads import cv
    from edgemaker.tasks import head_choice
    from edgemaker.tasks.options import ClassifierOptions, HParams

    samples, emb = clip_set(seed=4, per_class=12)
    y = np.array([samples[i].label for i in emb.owner])
    chosen = {"head": "softmax", "views": "clean", "weight_decay": 1e-4, "label_smoothing": 0.1}
    one = ClassifierOptions(hparams=HParams(), threads=1)
    two = ClassifierOptions(hparams=HParams(), threads=2)
    calls = []
    monkeypatch.setattr(cv, "forked_map", lambda *a: calls.append(1) or parallel.forked_map(*a))
    serial = head_choice.fit_chosen(one, chosen, 8, emb.vectors, y)
    assert not calls
    monkeypatch.setattr(cv, "FORK_MIN_ROW_FITS", 0)  # a set this small would stay in the process
    forked = head_choice.fit_chosen(two, chosen, 8, emb.vectors, y)
    assert calls == [1]
    np.testing.assert_array_equal(serial.coef_, forked.coef_)
    np.testing.assert_array_equal(serial.intercept_, forked.intercept_)
    assert len(forked.history_) == len(serial.history_) == 8
