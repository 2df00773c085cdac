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
    best = max(hist, key=lambda h: (h.val_accuracy, -h.val_loss))
    assert head.best_epoch_ == best.epoch
    assert head.score(Xv, yv) == pytest.approx(best.val_accuracy, abs=1e-6)


def test_views_axis_and_class_weights():
    X, y = blobs(n=60)
    keep = np.r_[0:20, 20:24, 40:60]  # class b is rare
    X3 = np.stack([X[keep], X[keep] + 0.1], axis=1)
    head = SoftmaxHead(epochs=5).fit(X3, y[keep])
    assert head.class_weights_ is not None and head.class_weights_["b"] > head.class_weights_["a"]
    assert SoftmaxHead(epochs=5, class_weight=None).fit(X3, y[keep]).class_weights_ is None


@pytest.mark.parametrize("params", [{"epochs": 0}, {"learning_rate": 0}, {"dropout": 1.0}, {"class_weight": "x"}])
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
