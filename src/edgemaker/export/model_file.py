"""What every exported file offers, whatever runtime runs it, and how a file becomes model inputs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..backbones.spec import AudioInput, ImageInput
from ..data.images import ImageDecodeError, load_for_model
from ..data.limits import bounded
from ..errors import EdgemakerError


def _image_input(spec: dict) -> ImageInput:
    return ImageInput(size=int(spec["size"]), mean=tuple(spec["mean"]), std=tuple(spec["std"]),
                      crop_padding=int(spec["crop_padding"]))


def _audio_input(spec: dict) -> AudioInput:
    return AudioInput(int(spec["sample_rate"]), int(spec["window_samples"]), int(spec["hop_samples"]), spec["frontend"])


def prepare_windows(path: Path, metadata: dict, silence: bool = True) -> np.ndarray:
    """A file -> the model inputs for it: (1, S, S, 3) uint8 for an image; (W, samples) float32
    waveform windows, or (W, frames, mels) log-mel windows, for a sound. Bad files raise EdgemakerError."""
    from ..data.remote import RemotePath

    spec = metadata["input"]
    if not isinstance(path, RemotePath):  # a file in an fsspec store (data/remote.py) stays a URL
        path = Path(path)
        if not path.is_file():  # said plainly, before a decoder words it as a format problem
            raise EdgemakerError(f"{path}: file not found; check the path")
    try:
        if spec["kind"] == "image":
            return load_for_model(path.read_bytes(), _image_input(spec))[None]
        from ..backbones.audio_backbones import FRONTENDS
        from ..data.audio import AudioDecodeError, SilenceOptions, clip_windows

        threshold = spec.get("silence_threshold_db")
        options = SilenceOptions(enabled=silence and threshold is not None,
                                 threshold_db=threshold if threshold is not None else -60.0)
        try:
            windows = np.stack(bounded(clip_windows(path, _audio_input(spec), options), AudioDecodeError))
        except AudioDecodeError as exc:
            raise EdgemakerError(f"{path}: {exc}") from None
        if spec["kind"] == "logmel":
            return FRONTENDS[metadata["backbone"]].compute(windows)
        return windows
    except ImageDecodeError as exc:
        raise EdgemakerError(f"{path}: {exc}") from None
    except OSError as exc:
        raise EdgemakerError(f"{path}: cannot read ({exc.strerror or exc})") from None


class ModelFile:
    """What every exported file offers, whatever runs it: labels, the input recipe, predictions per
    file (a sound: the mean over its windows), a per-window timeline and batch-1 latency.
    Subclasses provide `predict_proba(batch)` and `_example()` (one zero input)."""

    path: Path
    metadata: dict
    labels: list[str]
    input: dict

    @property
    def modality(self) -> str:
        return "image" if self.input["kind"] == "image" else "audio"

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _example(self) -> np.ndarray:
        raise NotImplementedError

    def prepare(self, path: Path, silence: bool = True) -> np.ndarray:
        return prepare_windows(path, self.metadata, silence)

    def predict_prepared(self, windows: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """All windows of one file -> the file's probabilities (mean over windows)."""
        rows = [self.predict_proba(windows[i : i + batch_size]) for i in range(0, len(windows), batch_size)]
        return np.concatenate(rows).mean(axis=0)

    def predict_files(self, paths: Sequence[Path], workers: int = 4) -> np.ndarray:
        """(N, classes): one row per file."""
        if not paths:
            return np.zeros((0, len(self.labels)))
        with ThreadPoolExecutor(workers) as pool:
            return np.stack([self.predict_prepared(w) for w in pool.map(self.prepare, paths)])

    def window_probabilities(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """Per-window probabilities of a sound on its own timeline (no silence removal): (starts_s, proba)."""
        windows = self.prepare(path, silence=False)
        proba = np.concatenate([self.predict_proba(windows[i : i + 16]) for i in range(0, len(windows), 16)])
        hop = self.input.get("hop_samples", 0) / self.input.get("sample_rate", 1)
        return np.arange(len(windows)) * hop, proba

    def latency_ms(self, runs: int = 20, warmup: int = 3) -> float:
        """Median wall time of one batch-1 inference (one image or one window) on this machine."""
        x = self._example()
        for _ in range(warmup):
            self.predict_proba(x)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            self.predict_proba(x)
            times.append((time.perf_counter() - t) * 1000)
        return float(np.median(times))

    def _labels_from(self, metadata: dict, beside: Path) -> list[str]:
        labels = metadata.get("labels")
        if not labels and beside.is_file():
            labels = [line for line in beside.read_text("utf-8").splitlines() if line]
        if not labels:
            raise EdgemakerError(f"{self.path}: no labels in the model metadata nor in {beside}")
        return list(labels)
