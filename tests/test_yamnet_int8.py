"""YAMNet's full-int8 TFLite file answers as the float classifier does: the head is equalised into the
trunk (backbones/equalise.py; without it, this test's int8 file agreed on 10 of 12 patches)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ai_edge_litert", reason="the tflite extra is not installed")

from edgemaker.backbones import get_spec, yamnet  # noqa: E402
from edgemaker.backbones.frontends import YAMNET_LOGMEL  # noqa: E402
from edgemaker.backbones.weights import resolve_weights  # noqa: E402
from edgemaker.export.base import FloatModel  # noqa: E402
from edgemaker.export.tflite import (  # noqa: E402
    TFLiteExporter, TFLiteModel, io_quantization, read_metadata, torch_classifier)
from edgemaker.export.quantization import Quantization  # noqa: E402
from edgemaker.heads.probe import ProbeHead  # noqa: E402

CLASSES = ("low", "mid", "high")


def sound(cls: int, rng: np.random.Generator) -> np.ndarray:
    """0.975 s of a class's tone (300 Hz, 1.2 kHz, 4 kHz, jittered) in noise, at a random level."""
    t = np.arange(get_spec("yamnet").audio.window_samples) / 16000
    f = (300, 1200, 4000)[cls] * rng.uniform(0.9, 1.1)
    x = np.sin(2 * np.pi * f * t) + rng.normal(0, rng.uniform(0.05, 0.5), t.size)
    return (x * 10 ** rng.uniform(-2, -0.5)).astype(np.float32)


def test_yamnet_full_int8_tflite_agrees_with_float(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 12)
    waves = np.stack([sound(c, rng) for c in labels])
    mel = np.stack([YAMNET_LOGMEL.compute(w) for w in waves]).astype(np.float32)
    with torch.no_grad():
        emb = yamnet.embedding(resolve_weights(get_spec("yamnet").weights))(torch.from_numpy(mel)).numpy()
    train, test = np.arange(len(labels)) % 3 != 0, np.arange(len(labels)) % 3 == 0
    head = ProbeHead(C=0.01).fit(emb[train], labels[train])  # standardisation folded into its weights
    model = FloatModel(get_spec("yamnet"), head.coef_, head.intercept_, CLASSES)
    columns = np.abs(head.coef_).max(axis=0)
    columns = columns[columns > 0]  # channels silent on every tone get no weight
    assert columns.max() / np.median(columns) > 50  # the case the equalisation is for

    module, _ = torch_classifier(model, frontend=False)
    assert module.embedding_scale is not None and len(module.embedding_scale) == 1024
    exporter, meta = TFLiteExporter(), model.metadata("int8", frontend=False)
    fp32 = exporter.convert(model, False, tmp_path / "model_fp32_nofrontend.tflite")
    # Calibrated as sounds are (quantization_for: ranges averaged over the windows), except the input:
    # the log-mel keeps the extremes of the calibration windows, so no value of them is clipped.
    quantization = Quantization.for_int8([fp32], max_samples=24, ranges="mean")
    int8 = exporter.quantize(fp32, tmp_path / "model_int8.tflite", quantization, list(mel[train]), meta)
    q = io_quantization(int8)["input"]
    lowest, highest = (-128 - q["zero_point"]) * q["scale"], (127 - q["zero_point"]) * q["scale"]
    assert lowest <= mel[train].min() + q["scale"] and highest >= mel[train].max() - q["scale"], (lowest, highest)
    assert np.mean([w.max() for w in mel[train]]) < highest - 3 * q["scale"]  # not the mean of the windows' ranges
    assert read_metadata(int8)["embedding_scale"] == pytest.approx(module.embedding_scale)
    with torch.no_grad():
        float_proba = module(torch.from_numpy(mel[test])).numpy()
    int8_proba = TFLiteModel(int8).predict_proba(mel[test])
    assert len(set(float_proba.argmax(1))) > 1  # the classifier tells the tones apart: agreement means something
    assert (int8_proba.argmax(1) == float_proba.argmax(1)).mean() >= 0.9
    # the int8 backbone read back from the file (the int8-aware head is fitted on it) is in the float units
    back = exporter.int8_backbone(int8, meta, None).embed(waves[test])  # fed like the float backbone
    cos = (back * emb[test]).sum(1) / np.linalg.norm(back, axis=1) / np.linalg.norm(emb[test], axis=1)
    assert cos.min() > 0.8
