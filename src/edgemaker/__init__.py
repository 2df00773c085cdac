"""edgemaker: a folder of labelled images in, an evaluated int8 classifier for devices out."""

__version__ = "0.1.0"

from .data.splits import SplitOptions, Splits, make_splits  # noqa: E402
from .data.validate import Sample, ValidationReport, validate_folder  # noqa: E402
from .export.quantization import Quantization  # noqa: E402
from .tasks.image_classifier import ImageClassifier  # noqa: E402
from .tasks.options import AugmentationOptions, HParams, ImageClassifierOptions, ModelOptions  # noqa: E402

__all__ = [
    "AugmentationOptions",
    "HParams",
    "ImageClassifier",
    "ImageClassifierOptions",
    "ModelOptions",
    "Quantization",
    "Sample",
    "SplitOptions",
    "Splits",
    "ValidationReport",
    "load_image_folder",
    "make_splits",
    "validate_folder",
]


def load_image_folder(root, split: "SplitOptions | None" = None, progress=None, cache=None) -> "Splits":
    """Validate `root` and split it (seeded, stratified): the usual first step of the Python API."""
    return make_splits(validate_folder(root, cache=cache, progress=progress), split or SplitOptions())
