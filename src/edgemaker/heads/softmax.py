"""Dropout + dense softmax on embeddings: the seed paper's head, trained in seconds on a CPU.

Follows scikit-learn's conventions: hyperparameters in __init__, `fit` returns self, fitted state
ends in an underscore, `predict_proba` columns are in `classes_` order, `random_state` seeds it all.
Features are standardised for training; the scaling is folded into the exported weights, so the
deployed layer is one plain matrix multiply.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None


class SoftmaxHead:
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

    def _validate_params(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if not self.learning_rate > 0:
            raise ValueError("learning_rate must be positive")
        if not 0 <= self.dropout < 1 or not 0 <= self.label_smoothing < 1:
            raise ValueError("dropout and label_smoothing must be within [0, 1)")
        if self.class_weight not in (None, "auto", "balanced"):
            raise ValueError("class_weight must be None, 'auto' or 'balanced'")

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in (
            "epochs", "batch_size", "learning_rate", "dropout", "label_smoothing",
            "weight_decay", "class_weight", "patience", "random_state")}

    def _sample_weights(self, y_idx: np.ndarray, n_classes: int) -> np.ndarray | None:
        counts = np.bincount(y_idx, minlength=n_classes).astype(np.float64)
        imbalanced = counts.max() > 1.5 * counts.min()
        if self.class_weight == "balanced" or (self.class_weight == "auto" and imbalanced):
            return (len(y_idx) / (n_classes * counts)).astype(np.float32)
        return None

    def fit(self, X, y, validation: tuple | None = None) -> SoftmaxHead:
        """X: (N, dim), or (N, views, dim) where each epoch draws one view per sample (augmentation).

        `validation` = (X_val, y_val): enables early stopping with the best epoch restored.
        """
        import torch

        self._validate_params()
        X = np.asarray(X, np.float32)
        if X.ndim == 2:
            X = X[:, None, :]
        if X.ndim != 3 or len(X) != len(y) or len(X) == 0:
            raise ValueError("X must be (N, dim) or (N, views, dim) with one label per row")
        self.classes_ = np.array(sorted(set(np.asarray(y).tolist())))
        if len(self.classes_) < 2:
            raise ValueError("need at least two classes")
        index = {c: i for i, c in enumerate(self.classes_.tolist())}
        y_idx = np.array([index[c] for c in np.asarray(y).tolist()], np.int64)
        n, views, dim = X.shape
        self.n_features_in_ = dim
        self.mean_ = X[:, 0].mean(0)
        self.scale_ = X[:, 0].std(0) + 1e-6

        gen = torch.Generator().manual_seed(self.random_state)
        rng = np.random.default_rng(self.random_state)
        torch.manual_seed(self.random_state)
        linear = torch.nn.Linear(dim, len(self.classes_))
        drop = torch.nn.Dropout(self.dropout)
        weights = self._sample_weights(y_idx, len(self.classes_))
        self.class_weights_ = None if weights is None else dict(zip(self.classes_.tolist(), weights.tolist()))
        loss_fn = torch.nn.CrossEntropyLoss(
            weight=None if weights is None else torch.from_numpy(weights), label_smoothing=self.label_smoothing
        )
        opt = torch.optim.AdamW(linear.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        Xs = torch.from_numpy((X - self.mean_) / self.scale_)
        yt = torch.from_numpy(y_idx)
        if validation is not None:
            Xv = np.asarray(validation[0], np.float32)
            Xv = torch.from_numpy((Xv - self.mean_) / self.scale_)
            yv = torch.tensor([index.get(c, -1) for c in np.asarray(validation[1]).tolist()])
            if (yv < 0).any():
                raise ValueError("validation has a class the training data does not")
        plain_loss = torch.nn.CrossEntropyLoss()

        self.history_: list[EpochRecord] = []
        best = (-1.0, float("inf"))
        best_state = None
        self.best_epoch_ = 0
        waited = 0
        for epoch in range(1, self.epochs + 1):
            linear.train()
            drop.train()
            order = torch.randperm(n, generator=gen)
            pick = torch.from_numpy(rng.integers(0, views, size=n))
            total_loss, correct = 0.0, 0
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                xb = Xs[idx, pick[idx]]
                logits = linear(drop(xb))
                loss = loss_fn(logits, yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total_loss += loss.item() * len(idx)
                correct += int((logits.argmax(1) == yt[idx]).sum())
            record = EpochRecord(epoch, total_loss / n, correct / n, None, None)
            linear.eval()
            if validation is not None:
                with torch.no_grad():
                    logits = linear(Xv)
                    record.val_loss = float(plain_loss(logits, yv))
                    record.val_accuracy = float((logits.argmax(1) == yv).float().mean())
                score = (record.val_accuracy, -record.val_loss)
                if score > (best[0], -best[1]):
                    best = (record.val_accuracy, record.val_loss)
                    best_state = {k: v.clone() for k, v in linear.state_dict().items()}
                    self.best_epoch_ = epoch
                    waited = 0
                else:
                    waited += 1
            self.history_.append(record)
            if validation is not None and waited >= self.patience:
                break
        if best_state is not None:
            linear.load_state_dict(best_state)
        else:
            self.best_epoch_ = len(self.history_)
        w = linear.weight.detach().numpy().astype(np.float64)
        b = linear.bias.detach().numpy().astype(np.float64)
        # Fold standardisation into the layer: W((x - m) / s) + b = (W / s) x + (b - W m / s).
        self.coef_ = (w / self.scale_).astype(np.float32)
        self.intercept_ = (b - (w / self.scale_) @ self.mean_).astype(np.float32)
        return self

    def decision_function(self, X) -> np.ndarray:
        X = np.asarray(X, np.float32)
        return X @ self.coef_.T + self.intercept_

    def predict_proba(self, X) -> np.ndarray:
        z = self.decision_function(X).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def score(self, X, y) -> float:
        return float((self.predict(X) == np.asarray(y)).mean())
