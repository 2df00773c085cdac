"""Third-party strategies and backbones: modules named in EDGEMAKER_PLUGINS (comma-separated) are
imported once, so their register_* calls run in every process a run uses (CLI, web worker)."""

from __future__ import annotations

import importlib
import os

from .errors import EdgemakerError

ENV = "EDGEMAKER_PLUGINS"
_loaded: set[str] = set()


def load_plugins() -> None:
    for name in (n.strip() for n in os.environ.get(ENV, "").split(",")):
        if name and name not in _loaded:
            try:
                importlib.import_module(name)
            except ImportError as exc:
                raise EdgemakerError(f"{ENV}: cannot import plugin {name!r} ({exc}); fix the name or its path") from None
            _loaded.add(name)
