"""Small trained models for the web tests and the serve benchmark: generated data, trained once per
process through the CLI's own pipeline (the backbone export is the cost, cached per session)."""

from __future__ import annotations

import atexit
import functools
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np


def png(kind: str, seed: int, size: int = 96, fmt: str = "PNG") -> bytes:
    from conftest import pattern_image

    buf = io.BytesIO()
    pattern_image(kind, np.random.default_rng(seed), size=size).convert("RGB").save(buf, fmt)
    return buf.getvalue()


def wav(freq: float, seed: int, seconds: float = 1.0) -> bytes:
    from web_helpers import wav_bytes

    return wav_bytes(freq, seconds=seconds, seed=seed)


IMAGE_CLASSES = ("stripes", "checks", "blobs")
TONES = (300.0, 900.0, 2000.0)


@functools.cache
def trained_model(modality: str, fmt: str = "onnx-fp32", per_class: int = 8) -> Path:
    """An exported model trained on generated images (3 patterns) or sounds (3 tones)."""
    from click.testing import CliRunner

    from edgemaker.cli import cli

    base = Path(tempfile.mkdtemp(prefix=f"edgemaker-{modality}-model-"))
    atexit.register(shutil.rmtree, base, True)
    for c, kind in enumerate(TONES if modality == "audio" else IMAGE_CLASSES):
        folder = base / "data" / (f"tone{int(kind)}" if modality == "audio" else kind)
        folder.mkdir(parents=True)
        for i in range(per_class):
            if modality == "audio":
                (folder / f"{i}.wav").write_bytes(wav(kind, seed=100 * c + i))
            else:
                (folder / f"{i}.png").write_bytes(png(kind, seed=100 * c + i))
    result = CliRunner().invoke(cli, ["train", str(base / "data"), "--out", str(base / "run"), "--formats", fmt,
                                      "--epochs", "10", "--augment-views", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    name = {"onnx-fp32": "model_fp32.onnx", "onnx-int8": "model_int8.onnx"}[fmt]
    return base / "run" / name
