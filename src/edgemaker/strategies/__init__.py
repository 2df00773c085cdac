"""Training strategies: the registry and the built-ins (head, auto, budget; distill as a refiner)."""

from . import builtin  # noqa: F401 - registers the built-ins
from .registry import (FitContext, Refiner, Strategy, get_refiner, get_strategy, refiner_names, register_refiner,
                       register_strategy, strategy_names)

__all__ = ["FitContext", "Refiner", "Strategy", "get_refiner", "get_strategy", "refiner_names", "register_refiner",
           "register_strategy", "strategy_names"]
