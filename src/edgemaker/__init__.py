"""edgemaker: a folder of labelled images or sounds in, an evaluated int8 classifier for devices out."""

__version__ = "0.1.0"

from .data.splits import SplitOptions, Splits, make_splits  # noqa: E402
from .data.validate import Sample, ValidationReport, validate_folder  # noqa: E402
from .export.quantization import Quantization  # noqa: E402
from .tasks.classifier import AudioClassifier, Classifier, ImageClassifier  # noqa: E402
from .tasks.options import (  # noqa: E402
    AudioClassifierOptions,
    AugmentationOptions,
    ClassifierOptions,
    HParams,
    ImageClassifierOptions,
    ModelOptions,
)

__all__ = [
    "AudioClassifier",
    "AudioClassifierOptions",
    "AugmentationOptions",
    "Classifier",
    "ClassifierOptions",
    "HParams",
    "ImageClassifier",
    "ImageClassifierOptions",
    "ModelOptions",
    "Quantization",
    "Sample",
    "SplitOptions",
    "Splits",
    "ValidationReport",
    "load_audio_folder",
    "load_folder",
    "load_image_folder",
    "make_splits",
    "validate_folder",
]


def load_folder(root, split: "SplitOptions | None" = None, progress=None, cache=None, modality=None) -> "Splits":
    """Validate `root` and split it (seeded, stratified): the usual first step of the Python API."""
    return make_splits(validate_folder(root, cache=cache, progress=progress, modality=modality), split or SplitOptions())


def load_image_folder(root, split: "SplitOptions | None" = None, progress=None, cache=None) -> "Splits":
    return load_folder(root, split, progress, cache, "image")


def load_audio_folder(root, split: "SplitOptions | None" = None, progress=None, cache=None) -> "Splits":
    return load_folder(root, split, progress, cache, "audio")
