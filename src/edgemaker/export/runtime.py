"""Run an exported file on its own: labels and preprocessing come from the file (or labels.txt)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..backbones.runtime import make_session
from ..errors import EdgemakerError
from .metadata import METADATA_KEY, PROBABILITIES
from .model_file import ModelFile


class ExportedModel(ModelFile):
    """An exported .onnx classifier, independent of the run folder that produced it."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise EdgemakerError(f"{self.path}: model file not found")
        if self.path.suffix.lower() != ".onnx":
            raise EdgemakerError(f"{self.path}: unsupported model format '{self.path.suffix}'; pass an .onnx or .tflite file")
        self._session = make_session(self.path, threads)
        props = self._session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in props:
            raise EdgemakerError(f"{self.path}: not an edgemaker model (no '{METADATA_KEY}' metadata)")
        self.metadata = json.loads(props[METADATA_KEY])
        self.labels = self._labels_from(self.metadata, self.path.with_name("labels.txt"))
        self.input = self.metadata["input"]

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """Model inputs (as from `prepare`) -> per-input probabilities."""
        dtype = np.uint8 if self.input["kind"] == "image" else np.float32
        out = self._session.run([PROBABILITIES], {self.input["name"]: np.ascontiguousarray(batch, dtype)})[0]
        return np.asarray(out, np.float64)

    def _example(self) -> np.ndarray:
        if self.input["kind"] == "image":
            return np.zeros((1, self.input["size"], self.input["size"], 3), np.uint8)
        dims = self._session.get_inputs()[0].shape
        return np.zeros([1, *[int(d) for d in dims[1:]]], np.float32)


def load_exported(path: str | Path, threads: int | None = None):
    """An exported .onnx or .tflite file, with the same interface either way."""
    if Path(path).suffix.lower() == ".tflite":
        from .tflite import TFLiteModel

        return TFLiteModel(path, threads)
    return ExportedModel(path, threads)
