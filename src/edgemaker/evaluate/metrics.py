"""Accuracy, log loss, confusion matrix and per-class precision/recall/F1 from probabilities."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Evaluation:
    classes: list[str]
    y_true: np.ndarray  # class indices
    probabilities: np.ndarray  # (N, n_classes), columns in `classes` order

    @property
    def y_pred(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def accuracy(self) -> float:
        return float((self.y_pred == self.y_true).mean()) if len(self.y_true) else float("nan")

    @property
    def loss(self) -> float:
        p = self.probabilities[np.arange(len(self.y_true)), self.y_true]
        return float(-np.log(np.clip(p, 1e-12, 1.0)).mean()) if len(p) else float("nan")

    @property
    def confusion_matrix(self) -> np.ndarray:
        """Rows: true class; columns: predicted class."""
        k = len(self.classes)
        cm = np.zeros((k, k), np.int64)
        np.add.at(cm, (self.y_true, self.y_pred), 1)
        return cm

    def per_class(self) -> dict[str, dict[str, float]]:
        cm = self.confusion_matrix
        out = {}
        for i, label in enumerate(self.classes):
            tp = cm[i, i]
            predicted, actual = cm[:, i].sum(), cm[i, :].sum()
            precision = tp / predicted if predicted else 0.0
            recall = tp / actual if actual else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            out[label] = {"precision": round(float(precision), 4), "recall": round(float(recall), 4),
                          "f1": round(float(f1), 4), "support": int(actual)}
        return out

    def agreement(self, other: Evaluation) -> float:
        """Fraction of samples where two models predict the same class."""
        return float((self.y_pred == other.y_pred).mean()) if len(self.y_true) else float("nan")

    def to_dict(self) -> dict:
        return {
            "accuracy": round(self.accuracy, 4),
            "loss": round(self.loss, 4),
            "samples": int(len(self.y_true)),
            "per_class": self.per_class(),
            "confusion_matrix": self.confusion_matrix.tolist(),
        }


def evaluate_predictions(classes: list[str], y_true_labels, probabilities: np.ndarray) -> Evaluation:
    index = {c: i for i, c in enumerate(classes)}
    y_true = np.array([index[str(label)] for label in y_true_labels], np.int64)
    probabilities = np.asarray(probabilities, np.float64)
    if probabilities.shape != (len(y_true), len(classes)):
        raise ValueError(f"probabilities shape {probabilities.shape} != ({len(y_true)}, {len(classes)})")
    return Evaluation(list(classes), y_true, probabilities)


def _binomial_tail(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exactly."""
    from math import comb

    return sum(comb(n, i) for i in range(k + 1)) / 2**n


def proportion_interval(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for a binomial proportion k/n, by bisection on the tails."""
    from math import comb

    def cdf(j: int, p: float) -> float:
        return sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(j + 1))

    def solve(j: int, target: float) -> float:  # cdf(j, p) falls as p grows: the p where it equals target
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if cdf(j, mid) > target else (lo, mid)
        return (lo + hi) / 2

    low = 0.0 if k == 0 else solve(k - 1, 1 - alpha / 2)  # P(X >= k) = alpha / 2
    high = 1.0 if k == n else solve(k, alpha / 2)  # P(X <= k) = alpha / 2
    return (low, high)


@dataclass(frozen=True)
class PairedLoss:
    """How much accuracy a file loses against its float source on the same samples, and whether
    the loss is real: an exact McNemar test on the samples where exactly one of the two is right."""

    samples: int
    lost: int  # right in the float model, wrong in the file
    gained: int  # wrong in the float model, right in the file
    p_value: float  # two-sided exact McNemar
    interval: tuple[float, float]  # 95% interval of the accuracy loss (fraction of samples), given the discordant count

    @property
    def loss(self) -> float:
        return (self.lost - self.gained) / self.samples if self.samples else 0.0

    def to_dict(self) -> dict:
        return {"lost": self.lost, "gained": self.gained, "p_value": round(self.p_value, 4),
                "loss_interval": [round(self.interval[0], 4), round(self.interval[1], 4)]}


def paired_loss(reference: Evaluation, other: Evaluation) -> PairedLoss:
    right_ref = reference.y_pred == reference.y_true
    right_other = other.y_pred == other.y_true
    lost = int((right_ref & ~right_other).sum())
    gained = int((~right_ref & right_other).sum())
    n, discordant = len(reference.y_true), lost + gained
    if discordant == 0:
        return PairedLoss(n, 0, 0, 1.0, (0.0, 0.0))
    p = min(1.0, 2 * _binomial_tail(min(lost, gained), discordant))
    low, high = proportion_interval(lost, discordant)  # P(a discordant sample is a loss)
    scale = discordant / n
    return PairedLoss(n, lost, gained, p, (scale * (2 * low - 1), scale * (2 * high - 1)))
