"""SoftmaxHead: scikit-learn conventions, reproducibility, early stopping, class weights."""

from __future__ import annotations

import numpy as np
import pytest

from edgemaker.heads import SoftmaxHead


def blobs(n=60, dim=20, k=3, seed=0, sep=3.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, sep, (k, dim))
    y = np.repeat(np.array(["a", "b", "c"][:k]), n // k)
    X = centres[np.searchsorted(["a", "b", "c"], y)] + rng.normal(0, 1, (len(y), dim))
    return X.astype(np.float32), y


def test_estimator_conventions():
    X, y = blobs()
    head = SoftmaxHead(epochs=30, random_state=1)
    assert head.fit(X, y) is head
    assert list(head.classes_) == ["a", "b", "c"]
    proba = head.predict_proba(X)
    assert proba.shape == (60, 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert (head.classes_[proba.argmax(1)] == head.predict(X)).all()
    assert head.score(X, y) > 0.95
    assert head.get_params()["random_state"] == 1


def test_same_seed_same_model_other_seed_other_model():
    X, y = blobs()
    a = SoftmaxHead(epochs=10, random_state=3).fit(X, y)
    b = SoftmaxHead(epochs=10, random_state=3).fit(X, y)
    c = SoftmaxHead(epochs=10, random_state=4).fit(X, y)
    assert np.array_equal(a.coef_, b.coef_)
    assert not np.array_equal(a.coef_, c.coef_)


def test_folded_weights_equal_the_standardised_model():
    X, y = blobs(dim=8)
    X[:, 0] = 5.0  # a dead (constant) feature must not explode when it fires at test time
    head = SoftmaxHead(epochs=20).fit(X, y)
    probe = X.copy()
    probe[:, 0] = 6.0
    assert np.isfinite(head.decision_function(probe)).all()
    assert np.abs(head.decision_function(probe) - head.decision_function(X)).max() < 50


def test_early_stopping_restores_the_best_epoch():
    X, y = blobs(sep=0.6, seed=2)
    Xv, yv = blobs(sep=0.6, seed=3)
    head = SoftmaxHead(epochs=200, patience=5, random_state=0).fit(X, y, validation=(Xv, yv))
    hist = head.history_
    assert len(hist) < 200  # it stopped
    best = hist[0]  # the first epoch no later one beats: higher accuracy, or equal with a loss lower by > tol
    for h in hist[1:]:
        if h.val_accuracy > best.val_accuracy or (h.val_accuracy == best.val_accuracy
                                                  and h.val_loss < best.val_loss - head.tol):
            best = h
    assert head.best_epoch_ == best.epoch
    assert head.score(Xv, yv) == pytest.approx(best.val_accuracy, abs=1e-6)


def test_a_loss_creeping_down_at_a_saturated_accuracy_stops_the_fit():
    """Separable classes: validation accuracy reaches 1.0 within a few epochs and the loss then keeps
    falling by tiny steps. Without a tolerance every epoch counts as better and all 300 run; with
    the default tol the fit stops, at the same accuracy."""
    X, y = blobs(n=120, sep=4.0, seed=5)
    X, y, Xv, yv = X[::2], y[::2], X[1::2], y[1::2]
    settings = {"epochs": 300, "patience": 10, "label_smoothing": 0.0, "learning_rate": 1e-2, "random_state": 0}
    exact = SoftmaxHead(tol=0.0, **settings).fit(X, y, validation=(Xv, yv))
    default = SoftmaxHead(**settings).fit(X, y, validation=(Xv, yv))
    assert len(exact.history_) == 300 and exact.score(Xv, yv) == 1.0
    assert len(default.history_) < 100 and default.score(Xv, yv) == 1.0


def test_views_axis_and_class_weights():
    X, y = blobs(n=60)
    keep = np.r_[0:20, 20:24, 40:60]  # class b is rare
    X3 = np.stack([X[keep], X[keep] + 0.1], axis=1)
    head = SoftmaxHead(epochs=5).fit(X3, y[keep])
    assert head.class_weights_ is not None and head.class_weights_["b"] > head.class_weights_["a"]
    assert SoftmaxHead(epochs=5, class_weight=None).fit(X3, y[keep]).class_weights_ is None


@pytest.mark.parametrize("params", [{"epochs": 0}, {"learning_rate": 0}, {"dropout": 1.0}, {"class_weight": "x"},
                                    {"tol": -1.0}])
def test_bad_hyperparameters_fail_at_fit(params):
    X, y = blobs()
    with pytest.raises(ValueError):
        SoftmaxHead(**params).fit(X, y)


def test_bad_data_is_refused():
    X, y = blobs()
    with pytest.raises(ValueError, match="two classes"):
        SoftmaxHead().fit(X, np.array(["a"] * len(X)))
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SoftmaxHead().fit(X, y)
