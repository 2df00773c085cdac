"""The metadata every exported file carries: labels and how to prepare the input."""

from __future__ import annotations

from collections.abc import Sequence

from .. import __version__
from ..backbones.runtime import INPUT_NAME
from ..backbones.spec import BackboneSpec

PROBABILITIES = "probabilities"
METADATA_KEY = "edgemaker"


def model_metadata(spec: BackboneSpec, classes: Sequence[str], quantization: str,
                   silence_threshold_db: float | None = None, frontend: bool = True) -> dict:
    """What a runtime needs besides the graph: labels and how to prepare the input."""
    meta = {
        "edgemaker_version": __version__,
        "task": f"{spec.modality}_classification",
        "labels": list(classes),
        "backbone": spec.name,
        "backbone_licence": spec.licence,
        "quantization": quantization,
        "output": {"name": PROBABILITIES, "meaning": "softmax probabilities in label order"},
    }
    if spec.image is not None:
        image = spec.image
        meta["input"] = {
            "name": INPUT_NAME, "kind": "image", "dtype": "uint8", "layout": "NHWC", "color": "RGB",
            "size": image.size, "mean": list(image.mean), "std": list(image.std),
            "crop_padding": image.crop_padding, "resize": "bicubic",
            "normalisation": "inside the graph: (pixel - mean) / std",
            "crop": "centre crop of size/(size+crop_padding)*min(h,w), then resize to size x size",
        }
        return meta
    audio = spec.audio
    assert audio is not None
    meta["input"] = {
        "name": "waveform" if frontend else "logmel",
        "kind": "waveform" if frontend else "logmel",
        "dtype": "float32",
        "sample_rate": audio.sample_rate,
        "window_samples": audio.window_samples,
        "hop_samples": audio.hop_samples,
        "mono": True,
        "range": "[-1, 1]",
        "frontend": audio.frontend + (" (inside the graph)" if frontend else " (computed by the caller)"),
        "silence_threshold_db": silence_threshold_db,
        "clip_result": "mean of the window probabilities",
    }
    return meta
