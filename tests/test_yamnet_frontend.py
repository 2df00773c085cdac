"""YAMNet's front end (backbones/frontends.py YAMNET_LOGMEL) against YAMNet's own graph and Google's
test vectors, stored as a short excerpt in tests/data/yamnet_frontend.npz (origin and licence:
tests/data/NOTICE.md)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgemaker.backbones.frontends import YAMNET_LOGMEL

FIXTURE = Path(__file__).parent / "data" / "yamnet_frontend.npz"


@pytest.fixture(scope="module")
def vectors():
    data = np.load(FIXTURE)
    return {k: data[k] for k in data.files}


def test_matches_yamnet_tflite_logmel(vectors):
    """The TFLite graph's mel projection is a dynamic-range int8 matmul: each frame's magnitudes are
    rounded to 1/127 of its loudest bin, so the quietest bands come out as ln(0.001) there. The typical
    band agrees to about 0.01; the tolerances leave 2x room over what the excerpt measures."""
    ours = YAMNET_LOGMEL.compute(vectors["audio_int16"] / 32768.0)
    err = np.abs(ours - vectors["tflite_logmel"])
    assert ours.shape == vectors["tflite_logmel"].shape == (10, 64)
    assert np.median(err) < 0.025
    assert np.quantile(err, 0.9) < 0.2


def test_matches_googles_test_spectra(vectors):
    """Google's reference patch is YAMNet's log-mel of the clip read as int16 / 8000 (a gain of
    32768 / 8000 = 4.096 over [-1, 1] audio): its offset from ours is ln(4.09) in every band."""
    ours = YAMNET_LOGMEL.compute(vectors["audio_int16"] / 32768.0)
    offset = vectors["google_spectra"] - ours
    assert np.exp(np.median(offset)) == pytest.approx(32768 / 8000, rel=0.01)
    err = np.abs(YAMNET_LOGMEL.compute(vectors["audio_int16"] / 8000.0) - vectors["google_spectra"])
    assert err.mean() < 0.025 and err.max() < 0.3


def test_mel_filters_are_tensorflows():
    """Triangles linear in mel with an empty DC bin (tf.signal.linear_to_mel_weight_matrix), not in Hz."""
    tf_style, hz_style = YAMNET_LOGMEL.mel_matrix, replace(YAMNET_LOGMEL, mel_triangles="hz").mel_matrix
    assert tf_style.shape == (257, 64)
    assert not tf_style[0].any()
    # YAMNet's int8 filters (scale <= 0.0078) lie within half a step (0.0039) of ours; Hz-linear ones do not
    assert np.abs(tf_style - hz_style).max() > 0.004


def test_graph_front_end_equals_numpy(vectors):
    torch = pytest.importorskip("torch")
    x = vectors["audio_int16"] / 32768.0
    graph = YAMNET_LOGMEL.torch_module()(torch.tensor(x[None], dtype=torch.float32)).numpy()[0]
    np.testing.assert_allclose(graph, YAMNET_LOGMEL.compute(x), atol=1e-4)


def test_python_snippet_computes_the_same_log_mel(vectors):
    """A front-end-less yamnet file's Python snippet writes the log-mel out in numpy: TF's filters too."""
    from edgemaker.export import snippets

    spec = YAMNET_LOGMEL
    meta = {"backbone": "yamnet", "labels": ["a", "b"],
            "input": {"kind": "logmel", "name": "logmel", "sample_rate": spec.sample_rate,
                      "window_samples": spec.samples_for(96), "hop_samples": spec.hop_length * 48}}
    code = snippets.python_onnxruntime(meta, "model.onnx").split("\nsession = ")[0]
    namespace: dict = {}
    exec(compile(code, "snippet", "exec"), namespace)  # noqa: S102 (our own generated code)
    x = vectors["audio_int16"][None] / 32768.0
    np.testing.assert_allclose(namespace["logmel"](x)[0], YAMNET_LOGMEL.compute(x[0]), atol=1e-5)
