"""Honest evaluation: metrics from predictions, and the report a person reads."""

from .metrics import Evaluation, evaluate_predictions

__all__ = ["Evaluation", "evaluate_predictions"]
