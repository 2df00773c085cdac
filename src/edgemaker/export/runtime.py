"""Run an exported file on its own: labels and preprocessing come from the file (or labels.txt)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..backbones.runtime import make_session
from ..backbones.spec import ImageInput
from ..data.images import ImageDecodeError, load_for_model
from ..errors import EdgemakerError
from .onnx_model import METADATA_KEY, PROBABILITIES


class ExportedModel:
    """An exported .onnx classifier, independent of the run folder that produced it."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise EdgemakerError(f"{self.path}: model file not found")
        if self.path.suffix.lower() != ".onnx":
            raise EdgemakerError(f"{self.path}: unsupported model format '{self.path.suffix}'; pass an .onnx file")
        self._session = make_session(self.path, threads)
        props = self._session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in props:
            raise EdgemakerError(f"{self.path}: not an edgemaker model (no '{METADATA_KEY}' metadata)")
        self.metadata = json.loads(props[METADATA_KEY])
        self.labels: list[str] = self._labels(self.metadata)
        spec = self.metadata["input"]
        self.image_input = ImageInput(
            size=int(spec["size"]), mean=tuple(spec["mean"]), std=tuple(spec["std"]),
            crop_padding=int(spec["crop_padding"]),
        )
        self.input_name = spec["name"]

    def _labels(self, metadata: dict) -> list[str]:
        labels = metadata.get("labels")
        beside = self.path.with_name("labels.txt")
        if not labels and beside.is_file():
            labels = [line for line in beside.read_text("utf-8").splitlines() if line]
        if not labels:
            raise EdgemakerError(f"{self.path}: no labels in the model metadata nor in {beside}")
        return list(labels)

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        out = self._session.run([PROBABILITIES], {self.input_name: np.ascontiguousarray(batch, np.uint8)})[0]
        return np.asarray(out, np.float64)

    def load_inputs(self, paths: Sequence[Path], workers: int = 4) -> np.ndarray:
        """Decode and preprocess files as the model expects; a bad file is a one-line error."""

        def one(path: Path) -> np.ndarray:
            try:
                return load_for_model(Path(path).read_bytes(), self.image_input)
            except ImageDecodeError as exc:
                raise EdgemakerError(f"{path}: {exc}") from None
            except OSError as exc:
                raise EdgemakerError(f"{path}: cannot read ({exc.strerror or exc})") from None

        with ThreadPoolExecutor(workers) as pool:
            return np.stack(list(pool.map(one, paths))) if paths else np.zeros((0, 1, 1, 3), np.uint8)

    def predict_files(self, paths: Sequence[Path], batch_size: int = 16) -> np.ndarray:
        rows = []
        for start in range(0, len(paths), batch_size):
            rows.append(self.predict_proba(self.load_inputs(paths[start : start + batch_size])))
        return np.concatenate(rows) if rows else np.zeros((0, len(self.labels)))

    def latency_ms(self, runs: int = 20, warmup: int = 3) -> float:
        """Median wall time of one batch-1 inference on this machine."""
        x = np.zeros((1, self.image_input.size, self.image_input.size, 3), np.uint8)
        for _ in range(warmup):
            self.predict_proba(x)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            self.predict_proba(x)
            times.append((time.perf_counter() - t) * 1000)
        return float(np.median(times))


def load_exported(path: str | Path) -> ExportedModel:
    return ExportedModel(path)
