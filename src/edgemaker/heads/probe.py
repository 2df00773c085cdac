"""The linear-probe floor: L2 multinomial logistic regression on standardised embeddings.

A convex fit with one setting (C), so it cannot be unlucky in its initialisation or epoch count;
where the trained softmax head does not beat it across folds, it is the head that ships. Like
SoftmaxHead it ends as one plain matrix multiply (standardisation folded into `coef_`), so every
export (ONNX, TFLite, int8, C, Arduino) takes it unchanged.
"""

from __future__ import annotations

import numpy as np

from ..training.loop import EpochRecord
from .softmax import one_blas_thread

# Inverse L2 strength on standardised features, from strong to weak (a decade apart, as bench/probe.py).
C_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


class ProbeHead:
    """scikit-learn's LogisticRegression (lbfgs, multinomial) with SoftmaxHead's fitted attributes."""

    def __init__(self, C: float = 1.0, class_weight: str | None = "auto", max_iter: int = 300,
                 random_state: int = 0) -> None:
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.random_state = random_state

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in ("C", "class_weight", "max_iter", "random_state")}

    def fit(self, X, y, validation: tuple | None = None, callback=None) -> ProbeHead:
        """X: (N, dim) rows (augmented views, if any, are just more rows); `validation` only fills
        the one history record (a convex fit has no epochs to stop early)."""
        from sklearn.linear_model import LogisticRegression

        X = np.asarray(X, np.float32)
        labels = np.asarray(y)
        if X.ndim != 2 or len(X) != len(labels) or not len(X):
            raise ValueError("X must be (N, dim) with one label per row")
        self.classes_ = np.array(sorted(set(labels.tolist())))
        if len(self.classes_) < 2:
            raise ValueError("need at least two classes")
        self.n_features_in_ = X.shape[1]
        self.mean_ = X.mean(0)
        std = X.std(0)
        self.scale_ = np.maximum(std, 0.1 * float(np.median(std)) + 1e-6).astype(np.float32)  # as SoftmaxHead
        counts = np.array([(labels == c).sum() for c in self.classes_], np.float64)
        balanced = self.class_weight == "balanced" or (self.class_weight == "auto" and counts.max() > 1.5 * counts.min())
        self.class_weights_ = (dict(zip(self.classes_.tolist(), (len(labels) / (len(counts) * counts)).tolist()))
                               if balanced else None)
        model = LogisticRegression(C=self.C, max_iter=self.max_iter, class_weight="balanced" if balanced else None,
                                   random_state=self.random_state)
        with one_blas_thread():
            model.fit((X - self.mean_) / self.scale_, labels)
        if len(self.classes_) == 2:  # binary: sklearn keeps one row; softmax over (-z/2, z/2) is the same sigmoid
            w = np.vstack([-model.coef_ / 2, model.coef_ / 2]).astype(np.float64)
            b = np.array([-model.intercept_[0] / 2, model.intercept_[0] / 2], np.float64)
        else:
            w, b = model.coef_.astype(np.float64), model.intercept_.astype(np.float64)
        self.coef_ = (w / self.scale_).astype(np.float32)
        self.intercept_ = (b - (w / self.scale_) @ self.mean_).astype(np.float32)
        self.n_iter_ = int(np.max(model.n_iter_))
        self.best_epoch_ = 0
        p = self.predict_proba(X)
        index = {c: i for i, c in enumerate(self.classes_.tolist())}
        y_idx = np.array([index[c] for c in labels.tolist()])
        record = EpochRecord(1, float(-np.log(np.clip(p[np.arange(len(y_idx)), y_idx], 1e-12, None)).mean()),
                             float((p.argmax(1) == y_idx).mean()), None, None)
        if validation is not None and len(validation[0]):
            pv = self.predict_proba(validation[0])
            yv = np.array([index[c] for c in np.asarray(validation[1]).tolist()])
            record.val_loss = float(-np.log(np.clip(pv[np.arange(len(yv)), yv], 1e-12, None)).mean())
            record.val_accuracy = float((pv.argmax(1) == yv).mean())
        self.history_ = [record]
        if callback is not None:
            callback(record)
        return self

    def decision_function(self, X) -> np.ndarray:
        return np.asarray(X, np.float32) @ self.coef_.T + self.intercept_

    def predict_proba(self, X) -> np.ndarray:
        z = self.decision_function(X).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def score(self, X, y) -> float:
        return float((self.predict(X) == np.asarray(y)).mean())
