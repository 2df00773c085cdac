"""Experiments over many training runs: `edgemaker compare` (backbones side by side) and `edgemaker curve` (accuracy by examples per class with and without transfer
learning). Both reuse the pipeline's pieces and caches and write results.json
(with a top-level "kind"), table.txt, table.md, plot.svg and an offline index.html into --out."""

from __future__ import annotations

__all__ = ["run_compare", "run_curve"]


def __getattr__(name: str):  # lazy: importing the package must not import torch or the pipeline
    if name == "run_compare":
        from .compare import run_compare

        return run_compare
    if name == "run_curve":
        from .curve import run_curve

        return run_curve
    raise AttributeError(name)
