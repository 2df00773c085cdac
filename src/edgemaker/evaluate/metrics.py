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
