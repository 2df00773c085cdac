"""The strategy registry: a leaf that strategies register into (it imports none of them).

A strategy turns the splits into a trained Classifier: `fit(splits, config, ctx) -> Classifier`.
A refiner takes another strategy's Classifier and may replace it: `refine(clf, splits, config, ctx)`.
Adding one = a module with the class and a `register_strategy(...)`/`register_refiner(...)` call,
imported by strategies/__init__.py (or by the caller, e.g. a plugin or a test).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import EdgemakerError
from ..plugins import load_plugins


@dataclass
class FitContext:
    """What a strategy may use beyond the splits and the config."""

    modality: str  # "image" or "audio"
    classifier: Any  # the task's Classifier class (tasks/classifier.py): create(), open_cache() ...
    progress: Any
    cache: Any  # the run's FeatureCache
    engine: Any  # features/engines.py's engine, None for local threads
    started: float  # perf_counter at the start of the run: time budgets count from there
    n_test: int  # test samples (an export-time estimate for time budgets)
    options: Any = None  # the options later steps use (a search narrows them to its winner's)
    formats: tuple[str, ...] = ()  # the formats the export stage will write; a strategy may add some
    records: dict[str, Any] = field(default_factory=dict)  # metrics.json key -> record with to_dict()
    after_export: list[Callable[[list[dict], Any], None]] = field(default_factory=list)  # (exports, out_dir)


class Strategy(Protocol):
    name: str

    def fit(self, splits, config, ctx: FitContext): ...


class Refiner(Protocol):
    name: str

    def refine(self, clf, splits, config, ctx: FitContext): ...


_STRATEGIES: dict[str, Strategy] = {}
_REFINERS: dict[str, Refiner] = {}


def register_strategy(strategy: Strategy) -> Strategy:
    """Register under `strategy.name` (a later registration of the same name replaces the earlier)."""
    _STRATEGIES[strategy.name] = strategy
    return strategy


def register_refiner(refiner: Refiner) -> Refiner:
    _REFINERS[refiner.name] = refiner
    return refiner


def unregister(name: str) -> None:
    _STRATEGIES.pop(name, None)
    _REFINERS.pop(name, None)


def get_strategy(name: str) -> Strategy:
    load_plugins()  # EDGEMAKER_PLUGINS: other packages' strategies, at first use (they may import the pipeline)
    if name not in _STRATEGIES:
        raise EdgemakerError(f"unknown training strategy {name!r}: choose from {', '.join(sorted(_STRATEGIES))}")
    return _STRATEGIES[name]


def get_refiner(name: str) -> Refiner:
    load_plugins()
    if name not in _REFINERS:
        raise EdgemakerError(f"unknown refinement {name!r}: choose from {', '.join(sorted(_REFINERS))}")
    return _REFINERS[name]


def strategy_names() -> list[str]:
    load_plugins()
    return sorted(_STRATEGIES)


def refiner_names() -> list[str]:
    load_plugins()
    return sorted(_REFINERS)
