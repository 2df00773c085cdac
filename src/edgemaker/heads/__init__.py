"""Classifier heads trained on cached embeddings (scikit-learn estimator conventions)."""

from .softmax import SoftmaxHead

__all__ = ["SoftmaxHead"]
