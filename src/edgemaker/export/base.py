"""What every exporter builds from, and the one interface each runtime's exporter offers.

Export knows nothing of how a model was trained: a `FloatModel` is a backbone spec (whose weights
file says which network, pretrained or fine-tuned), a linear head and the labels. Each runtime
(ONNX Runtime, LiteRT, ...) has one `Exporter` that converts it to a float file, quantizes a file,
loads a file back, and exposes the int8 backbone inside a quantized file; the int8 flow
(`export.int8`) and the export session (`export.session`) are written once above them.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from ..backbones.spec import BackboneSpec
from .metadata import model_metadata
from .quantization import Quantization

FILE_STEMS = {"none": "model_fp32", "int8": "model_int8", "dynamic": "model_dynamic", "float16": "model_fp16"}


class LinearHead(Protocol):
    """A fitted linear softmax head: probabilities = softmax(x @ coef_.T + intercept_)."""

    coef_: np.ndarray
    intercept_: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class FloatModel:
    """Backbone + linear head + labels: the float classifier every exported file derives from."""

    spec: BackboneSpec
    coef: np.ndarray  # (classes, feature_dim)
    intercept: np.ndarray  # (classes,)
    classes: tuple[str, ...]
    silence_threshold_db: float | None = None  # sounds: the silence removal the head was trained with
    graph_root: Path | None = None  # where backbone graphs are cached (None: the user cache)
    flip_average: bool = False  # images: the probabilities of the image and its mirror, averaged in the graph

    def with_head(self, head: LinearHead) -> FloatModel:
        return dataclasses.replace(self, coef=np.asarray(head.coef_, np.float32),
                                   intercept=np.asarray(head.intercept_, np.float32))

    def metadata(self, quantization: str = "none", frontend: bool = True) -> dict:
        meta = model_metadata(self.spec, self.classes, quantization, self.silence_threshold_db, frontend)
        if self.flip_average and self.spec.image is not None:
            meta["flip_average"] = "inside the graph: mean of the probabilities of the image and its horizontal mirror"
        return meta


def file_input(batch: np.ndarray, metadata: dict) -> np.ndarray:
    """What a file takes, from what the float backbone takes: the same images, or waveform windows
    turned into log-mel patches for files without the in-graph front end."""
    if metadata["input"]["kind"] != "logmel":
        return batch
    from ..backbones.audio_backbones import FRONTENDS

    return FRONTENDS[metadata["backbone"]].compute(batch.astype(np.float32))


class Int8Backbone(Protocol):
    """The int8 backbone inside a quantized file: the same inputs as the float backbone -> (N, dim)."""

    def embed(self, batch: np.ndarray) -> np.ndarray: ...


class Exporter(ABC):
    """One runtime's file format. Paths are final names; every write is atomic."""

    runtime: str
    suffix: str
    route_id: str = ""  # how int8 files are quantized, when a runtime offers several routes
    # Variants of that route the int8 flow tries and chooses among on validation: (name, overrides).
    int8_routes: tuple[tuple[str, dict], ...] = (("all int8", {}),)

    def path(self, out_dir: Path, kind: str, frontend: bool) -> Path:
        return out_dir / f"{FILE_STEMS[kind]}{'' if frontend else '_nofrontend'}{self.suffix}"

    @abstractmethod
    def convert(self, model: FloatModel, frontend: bool, target: Path) -> Path:
        """Write the float file (backbone + head + labels) to `target`."""

    @abstractmethod
    def quantize(self, source: Path, target: Path, quantization: Quantization, calibration: Sequence[np.ndarray],
                 metadata: dict) -> Path:
        """Write a quantized copy of the float file `source`; int8 calibrates on `calibration` inputs."""

    def quantize_route(self, route: dict, source: Path, target: Path, quantization: Quantization,
                       calibration: Sequence[np.ndarray], metadata: dict) -> Path:
        """`quantize` by one of `int8_routes`' variants; a runtime with a single route ignores it."""
        return self.quantize(source, target, quantization, calibration, metadata)

    @abstractmethod
    def int8_backbone(self, int8_file: Path, metadata: dict, threads: int | None) -> Int8Backbone:
        """The int8 backbone of a quantized file, for fitting a head on its own embeddings."""

    @abstractmethod
    def int8_with_head(self, model: FloatModel, frontend: bool, float_file: Path, int8_file: Path, target: Path,
                       quantization: Quantization, calibration: Sequence[np.ndarray], metadata: dict) -> Path:
        """The int8 file again with `model`'s head (same int8 backbone) at `target`."""

    @abstractmethod
    def load(self, path: Path, threads: int | None = None):
        """The file as a model to run (the same interface for every runtime: export/model_file.py)."""

    def replace(self, source: Path, target: Path) -> None:
        """Move a finished file over another (atomic rename)."""
        source.replace(target)

    def remove(self, path: Path) -> None:
        """Delete a file this exporter wrote (and whatever it writes beside it)."""
        path.unlink(missing_ok=True)
