"""The seed paper's extractors shipped in the package: YAMNet (sounds) and MobileNetV2 (images).

Stored values (tests/data/tfnet/yamnet.npz, mobilenet_v2.npz) were written by tools/convert_weights.py,
which also ran the source TFLite files' own interpreter (ORIGIN.md beside the weights records the
errors): nothing here reads ../shared or converts anything. MobileNetV2's pooled features on the
fixture image are checked with the other shipped networks in tests/test_tfnet.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgemaker.backbones import DEFAULT_AUDIO_BACKBONES, get_builder, get_spec, list_backbones  # noqa: E402
from edgemaker.backbones import yamnet  # noqa: E402
from edgemaker.backbones.weights import resolve_weights, sha256_file  # noqa: E402

DATA = Path(__file__).parent / "data"
SPEECH = 0  # index 0 of YAMNet's class map (yamnet_class_map.csv): "Speech"


@pytest.fixture(scope="module")
def excerpt_window() -> np.ndarray:
    """Google's YAMNet test clip (speech): its first 1840 samples in a zero 15600-sample window."""
    stored = np.load(DATA / "tfnet" / "yamnet.npz")
    clip = np.load(DATA / "yamnet_frontend.npz")["audio_int16"] / 32768.0
    assert len(clip) == int(stored["excerpt_samples"])
    window = np.zeros(get_spec("yamnet").audio.window_samples, np.float32)
    window[:len(clip)] = clip
    return window


@pytest.mark.parametrize("name", ["yamnet", "mobilenet_v2"])
def test_shipped_weights_verify(name):
    spec = get_spec(name)
    path = resolve_weights(spec.weights)  # raises on a sha256 mismatch
    assert sha256_file(path) == spec.weights.sha256
    assert (path.parent / "LICENSE").is_file() and spec.weights.sha256 in (path.parent / "ORIGIN.md").read_text()
    with np.load(path) as data:  # int8/uint8 weights with scales, not float copies
        big = [k for k in data.files if data[k].size > 10_000]
        assert big and all(k.endswith("::q") and data[k].dtype.itemsize == 1 for k in big)


def test_yamnet_hears_speech_in_googles_test_clip(excerpt_window):
    stored = np.load(DATA / "tfnet" / "yamnet.npz")
    spec = get_spec("yamnet")
    weights = resolve_weights(spec.weights)
    backbone = get_builder("yamnet")(spec, weights)  # waveform -> in-graph front end -> 1024-d
    net = yamnet.network(weights, with_classifier=True)
    with torch.no_grad():
        emb = backbone(torch.from_numpy(excerpt_window)[None])
        scores = torch.sigmoid(net.classifier(emb))[0].numpy()
    assert int(scores.argmax()) == SPEECH == int(stored["tflite_scores"].argmax())
    np.testing.assert_allclose(emb[0].numpy(), stored["embedding"], rtol=1e-3, atol=1e-4)
    # The TFLite file computes with int8 activations; the rebuild in float: the converter measured the gap.
    gap = np.abs(scores - stored["tflite_scores"]).max()
    assert gap <= float(stored["excerpt_scores_max_abs_error"]) + 1e-3


def test_yamnet_and_mobilenet_v2_are_registered_and_yamnet_is_a_default_sound_candidate():
    from edgemaker.tasks.auto import AUDIO_CANDIDATES, IMAGE_CANDIDATES

    assert "yamnet" in {name for name, _ in AUDIO_CANDIDATES} and "yamnet" in DEFAULT_AUDIO_BACKBONES
    assert "mobilenet_v2" in {name for name, _ in IMAGE_CANDIDATES}
    names = {s.name for s in list_backbones("audio")}
    assert {"yamnet", "aisfx", "efficientnet_lite0_mel"} <= names
    assert "mobilenet_v2" in {s.name for s in list_backbones("image")}
    spec = get_spec("yamnet")
    assert (spec.audio.sample_rate, spec.audio.window_samples, spec.audio.hop_samples) == (16000, 15600, 7680)
