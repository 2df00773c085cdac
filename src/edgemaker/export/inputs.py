"""Model inputs decoded once per run and shared by every file built or checked in it.

Calibration (for each int8 file) and the validation check (for each int8 head choice) used to
decode the same images or clips again for every runtime and every candidate file; here each file is
prepared once per input recipe and kept for the run (a few tens of MB of images, or windows).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .quantization import Quantization
from .model_file import prepare_windows

# Fields a runtime adds to the input recipe that do not change what the input is.
_RUNTIME_FIELDS = ("tflite_dtype", "scale", "zero_point", "tflite_values")


def recipe_key(metadata: dict) -> str:
    """Files whose metadata give the same key take the very same prepared input."""
    recipe = {k: v for k, v in metadata["input"].items() if k not in _RUNTIME_FIELDS}
    return json.dumps([metadata["backbone"], recipe], sort_keys=True)


class PreparedInputs:
    def __init__(self, workers: int = 4) -> None:
        self._files: dict[tuple[str, Path], np.ndarray] = {}
        self._calibration: dict[tuple[str, tuple], list[np.ndarray]] = {}
        self._workers = workers

    def files(self, paths: Sequence[Path], metadata: dict) -> list[np.ndarray]:
        """Each file's model inputs (1 image, or a clip's windows), decoded in threads the first time."""
        from ..data.sources import as_path  # files in an fsspec store stay URLs

        key = recipe_key(metadata)
        missing = list(dict.fromkeys(as_path(p) for p in paths if (key, as_path(p)) not in self._files))
        if missing:
            with ThreadPoolExecutor(self._workers) as pool:
                for path, x in zip(missing, pool.map(lambda p: prepare_windows(p, metadata), missing)):
                    self._files[(key, path)] = x
        return [self._files[(key, as_path(p))] for p in paths]

    def calibration(self, quantization: Quantization, metadata: dict) -> list[np.ndarray]:
        """At most `quantization.max_samples` inputs, spread evenly over the representative files and,
        for sounds, over each clip's windows (not just its first ones); the same list every time."""
        key = (recipe_key(metadata), (quantization.max_samples, tuple(quantization.calibration_files())))
        if key not in self._calibration:
            self._calibration[key] = calibration_inputs(quantization, metadata, self._workers)
        return self._calibration[key]


def calibration_inputs(quantization: Quantization, metadata: dict, workers: int = 4) -> list[np.ndarray]:
    """Only the picked windows are kept, not every window of every calibration clip."""
    files = quantization.calibration_files()
    per_file = max(1, quantization.max_samples // max(len(files), 1))

    def picked(path: Path) -> list[np.ndarray]:
        windows = prepare_windows(path, metadata)
        picks = np.unique(np.linspace(0, len(windows) - 1, min(per_file, len(windows))).round().astype(int))
        return [windows[i].copy() for i in picks]

    with ThreadPoolExecutor(workers) as pool:
        out = [w for chunk in pool.map(picked, files) for w in chunk]
    return out[: quantization.max_samples]
