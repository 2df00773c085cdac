"""Where edgemaker keeps what it can rebuild: exported backbones and cached embeddings."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$EDGEMAKER_CACHE_DIR`, else `$XDG_CACHE_HOME/edgemaker`, else `~/.cache/edgemaker`."""
    explicit = os.environ.get("EDGEMAKER_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "edgemaker"
