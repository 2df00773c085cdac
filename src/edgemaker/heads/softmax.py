"""Dropout + dense softmax on embeddings: a head that trains in seconds on a CPU.

Follows scikit-learn's conventions: hyperparameters in __init__, `fit` returns self, fitted state
ends in an underscore, `predict_proba` columns are in `classes_` order, `random_state` seeds it all.
Features are standardised for training; the scaling is folded into the exported weights, so the
deployed layer is one plain matrix multiply.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import numpy as np

from ..faults import point
from ..training.loop import EpochRecord, train_epochs


class SoftmaxHead:
    VERSION = 3  # bump when training changes what a fit returns (remembered head searches are keyed on it)

    def __init__(
        self,
        epochs: int = 100,
        batch_size: int = 32,
        learning_rate: float = 1e-3,
        dropout: float = 0.2,
        label_smoothing: float = 0.1,
        weight_decay: float = 1e-4,
        class_weight: str | None = "auto",
        patience: int = 15,
        random_state: int = 0,
        tol: float = 1e-3,
    ) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.dropout = dropout
        self.label_smoothing = label_smoothing
        self.weight_decay = weight_decay
        self.class_weight = class_weight
        self.patience = patience
        self.random_state = random_state
        self.tol = tol  # early stopping: at equal accuracy, a validation loss must drop by more than this

    def _validate_params(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if not self.learning_rate > 0:
            raise ValueError("learning_rate must be positive")
        if not 0 <= self.dropout < 1 or not 0 <= self.label_smoothing < 1:
            raise ValueError("dropout and label_smoothing must be within [0, 1)")
        if self.class_weight not in (None, "auto", "balanced"):
            raise ValueError("class_weight must be None, 'auto' or 'balanced'")
        if not self.tol >= 0:
            raise ValueError("tol must be at least 0")

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in (
            "epochs", "batch_size", "learning_rate", "dropout", "label_smoothing",
            "weight_decay", "class_weight", "patience", "random_state", "tol")}

    def _sample_weights(self, y_idx: np.ndarray, n_classes: int) -> np.ndarray | None:
        counts = np.bincount(y_idx, minlength=n_classes).astype(np.float64)
        imbalanced = counts.max() > 1.5 * counts.min()
        if self.class_weight == "balanced" or (self.class_weight == "auto" and imbalanced):
            return (len(y_idx) / (n_classes * counts)).astype(np.float32)
        return None

    def fit(self, X, y, validation: tuple | None = None, callback=None, soft_targets=None) -> SoftmaxHead:
        """X: (N, dim), or (N, views, dim) where each epoch draws one view per sample (augmentation).

        `validation` = (X_val, y_val): enables early stopping with the best epoch restored.
        `callback(record)`: called after every epoch with its EpochRecord (live charts).
        `soft_targets`: (N, views, classes) probabilities (classes in sorted label order) replacing the
        one-hot targets, e.g. a teacher's (distillation, tasks/distill.py); `y` still picks the weights.
        Plain numpy (mini-batch AdamW on the softmax cross-entropy), deterministic for `random_state`.
        """
        with one_blas_thread():
            return self._fit(X, y, validation, callback, soft_targets)

    def _fit(self, X, y, validation, callback, soft_targets=None) -> SoftmaxHead:
        self._validate_params()
        X = np.asarray(X, np.float32)
        if X.ndim == 2:
            X = X[:, None, :]
        labels = np.asarray(y).tolist()
        if X.ndim != 3 or len(X) != len(labels) or len(X) == 0:
            raise ValueError("X must be (N, dim) or (N, views, dim) with one label per row")
        if not np.isfinite(X).all():
            raise ValueError("X contains NaN or infinite values")
        self.classes_ = np.array(sorted(set(labels)))
        k = len(self.classes_)
        if k < 2:
            raise ValueError("need at least two classes")
        index = {c: i for i, c in enumerate(self.classes_.tolist())}
        y_idx = np.array([index[c] for c in labels], np.int64)
        n, views, dim = X.shape
        self.n_features_in_ = dim
        self.mean_ = X[:, 0].mean(0)
        std = X[:, 0].std(0)
        # Near-constant features (dead channels on a small dataset) must not be blown up: folded
        # into the weights, a 1/std of 1e6 would explode on any test image where they do fire,
        # and would wreck int8 weight ranges.
        self.scale_ = np.maximum(std, 0.1 * float(np.median(std)) + 1e-6).astype(np.float32)
        Xs = (X - self.mean_) / self.scale_
        if validation is not None:
            Xv = (np.asarray(validation[0], np.float32) - self.mean_) / self.scale_
            unknown = set(np.asarray(validation[1]).tolist()) - set(index)
            if unknown:
                raise ValueError(f"validation has classes the training data does not: {sorted(unknown)}")
            yv = np.array([index[c] for c in np.asarray(validation[1]).tolist()], np.int64)

        rng = np.random.default_rng(self.random_state)
        weights = self._sample_weights(y_idx, k)
        self.class_weights_ = None if weights is None else dict(zip(self.classes_.tolist(), weights.tolist()))
        sample_w = np.ones(n, np.float32) if weights is None else weights[y_idx]
        eps = self.label_smoothing
        targets = np.full((n, k), eps / k, np.float32)
        targets[np.arange(n), y_idx] += 1.0 - eps
        soft = None if soft_targets is None else np.asarray(soft_targets, np.float32).reshape(n, -1, k)

        bound = 1.0 / np.sqrt(dim)  # PyTorch's nn.Linear initialisation
        W = rng.uniform(-bound, bound, (dim, k)).astype(np.float32)
        b = rng.uniform(-bound, bound, k).astype(np.float32)
        adam = _AdamW([W, b], self.learning_rate, self.weight_decay)
        keep_level = round((1.0 - self.dropout) * 65536)  # a unit kept when its 16-bit draw is below this
        keep = keep_level / 65536

        def train_epoch(epoch: int) -> tuple[float, float]:
            order = rng.permutation(n)
            pick = rng.integers(0, views, size=n)
            total_loss, correct = 0.0, 0
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                xb = Xs[idx, pick[idx]]
                if self.dropout:
                    xb *= _keep_mask(rng, xb.shape, keep_level)
                    xb *= 1.0 / keep
                p = _softmax(xb @ W + b)
                wb = sample_w[idx]
                norm = wb.sum()
                tb = targets[idx] if soft is None else soft[idx, pick[idx] % soft.shape[1]]
                losses = -(tb * np.log(np.clip(p, 1e-12, None))).sum(1)
                total_loss += float((wb * losses).sum() / norm) * len(idx)
                correct += int((p.argmax(1) == y_idx[idx]).sum())
                dz = (p - tb) * (wb / norm)[:, None]
                adam.step([xb.T @ dz, dz.sum(0)])
            return total_loss / n, correct / n

        def validate() -> tuple[float, float]:
            pv = _softmax(Xv @ W + b)
            loss = float(-np.log(np.clip(pv[np.arange(len(yv)), yv], 1e-12, None)).mean())
            return float((pv.argmax(1) == yv).mean()), loss

        def restore(state) -> None:
            W[...], b[...] = state

        def on_epoch(record: EpochRecord) -> None:
            point("epoch")
            if callback is not None:
                callback(record)

        fit = train_epochs(self.epochs, train_epoch, validate if validation is not None else None, self.patience,
                           lambda: (W.copy(), b.copy()), restore, on_epoch, min_delta=self.tol)
        self.history_, self.best_epoch_ = fit.history, fit.best_epoch
        w = W.T.astype(np.float64)  # the best epoch's weights (restored) or, without validation, the last
        bias = b.astype(np.float64)
        # Fold standardisation into the layer: W((x - m) / s) + b = (W / s) x + (b - W m / s).
        self.coef_ = (w / self.scale_).astype(np.float32)
        self.intercept_ = (bias - (w / self.scale_) @ self.mean_).astype(np.float32)
        return self

    def decision_function(self, X) -> np.ndarray:
        X = np.asarray(X, np.float32)
        return X @ self.coef_.T + self.intercept_

    def predict_proba(self, X) -> np.ndarray:
        return _softmax(self.decision_function(X).astype(np.float64)).astype(np.float32)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def score(self, X, y) -> float:
        return float((self.predict(X) == np.asarray(y)).mean())


_blas = {"depth": 0, "limiter": None}
_blas_lock = threading.Lock()


def _fresh_lock_after_fork() -> None:  # a forked worker must not inherit the lock held by another thread
    global _blas_lock
    _blas_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_lock_after_fork)


@contextmanager
def one_blas_thread():
    """BLAS on one thread while fitting: the matrices are small (a batch of 32 rows), and a second BLAS
    thread only spins; on a busy 2-core machine 5 epochs took 26 s with two threads, 1.5 s with one.
    Safe to nest and to enter from several threads at once (cross-validation fits heads side by
    side): the first entry sets the limit, the last exit restores it."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it the fit is the same, only slower on busy machines
        yield
        return
    with _blas_lock:
        _blas["depth"] += 1
        if _blas["depth"] == 1:
            _blas["limiter"] = threadpool_limits(limits=1, user_api="blas")
    try:
        yield
    finally:
        with _blas_lock:
            _blas["depth"] -= 1
            if _blas["depth"] == 0:
                _blas["limiter"].restore_original_limits()
                _blas["limiter"] = None


def _keep_mask(rng: np.random.Generator, shape: tuple, level: int) -> np.ndarray:
    """Dropout's keep mask: each unit kept with probability level / 65536. Four 16-bit draws come
    from every raw 64-bit word, about 4x faster than one float per unit (the float mask was a third
    of a training step's time)."""
    n = int(np.prod(shape))
    words = rng.bit_generator.random_raw((n + 3) // 4)
    return (words.view(np.uint16)[:n] < level).reshape(shape)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class _AdamW:
    """AdamW (decoupled weight decay), as torch.optim.AdamW with default betas: the bias corrections
    folded into the step size and the denominator as torch does, in place (one scratch array per
    parameter), so a step allocates nothing."""

    def __init__(self, params: list[np.ndarray], lr: float, weight_decay: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params, self.lr, self.wd, self.betas, self.eps = params, lr, weight_decay, betas, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.scratch = [np.empty_like(p) for p in params]
        self.t = 0

    def step(self, grads: list[np.ndarray]) -> None:
        self.t += 1
        b1, b2 = self.betas
        step_size = self.lr / (1 - b1**self.t)
        root_bc2 = float(np.sqrt(1 - b2**self.t))
        for p, g, m, v, tmp in zip(self.params, grads, self.m, self.v, self.scratch):
            p *= 1 - self.lr * self.wd
            m *= b1
            np.multiply(g, 1 - b1, out=tmp)
            m += tmp
            v *= b2
            np.multiply(g, g, out=tmp)
            tmp *= 1 - b2
            v += tmp
            np.sqrt(v, out=tmp)  # denominator: sqrt(v / bc2) + eps, as sqrt(v) / sqrt(bc2) + eps
            tmp *= 1 / root_bc2
            tmp += self.eps
            np.divide(m, tmp, out=tmp)
            tmp *= step_size
            p -= tmp
