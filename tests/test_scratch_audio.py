"""small_cnn_mel (issues 12 and 13): a sound network trained from random initialisation on a log-mel
front end in its graph: trains on generated tones, exports int8 (ONNX and a TFLite file TFLite Micro
runs), is the sound student of --distill, and gives `curve` its from-scratch column on sounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder, make_tone_folder

from edgemaker.backbones import DEFAULT_AUDIO_BACKBONES, small_cnn_mel
from edgemaker.backbones.frontends import SMALL_LOGMEL
from edgemaker.export import tflm
from edgemaker.export.runtime import load_exported
from edgemaker.pipeline import train_run
from edgemaker.tasks.options import (
    AugmentationOptions,
    ClassifierOptions,
    HParams,
    ModelOptions,
)


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    return make_tone_folder(tmp_path_factory.mktemp("sndcnn") / "tones", seed=3, loudness=(0.1, 0.5))


@pytest.fixture(scope="module")
def distilled(tones, tmp_path_factory):
    """One run does it all: `--backbone small_cnn` on sounds (small_cnn_mel) as the from-scratch twin,
    the distilled student, and the int8 files of the one kept."""
    out = tmp_path_factory.mktemp("sndcnn-run") / "run"
    options = ClassifierOptions(model=ModelOptions(backbone="small_cnn", width=8),
                                hparams=HParams(epochs=15, learning_rate=3e-3), augmentation=AugmentationOptions(views=1))
    return out, train_run(tones, out, options, formats=("onnx-int8", "tflite-int8"), distill=True)


def test_the_front_end_in_the_graph_is_the_one_training_sees():
    import torch

    x = np.random.default_rng(0).normal(0, 0.2, (2, small_cnn_mel.SPEC.audio.window_samples)).astype(np.float32)
    graph = SMALL_LOGMEL.torch_module()(torch.from_numpy(x)).numpy()
    assert graph.shape == (2, small_cnn_mel.FRAMES, SMALL_LOGMEL.n_mels)
    assert np.abs(graph - SMALL_LOGMEL.compute(x)).max() < 1e-4
    net = small_cnn_mel.make_network(8)
    assert sum(p.numel() for p in net.parameters()) == small_cnn_mel.parameter_count(8)
    assert net(torch.from_numpy(graph)).shape == (2, 32)


def test_small_cnn_mel_learns_tones_and_exports_int8_that_tflm_runs(distilled, tones):
    out, m = distilled
    assert m["backbone"]["name"] == "small_cnn_mel" and m["backbone"]["sample_rate"] == 16000
    net = m["training"]["network"]
    assert net["trained"] == "from scratch" and net["width"] == 8 and net["epochs_run"] >= 1
    assert m["test"]["accuracy"] > 0.5  # chance is 1/3
    files = {e["format"]: e for e in m["exports"]}
    assert set(files) == {"onnx-int8", "tflite-int8"}
    small = files["tflite-int8"]
    assert small["size_bytes"] < 100_000, small  # tens of kB: a microcontroller's model
    assert small["test_accuracy"] > 0.5 and files["onnx-int8"]["test_accuracy"] > 0.5
    if tflm.available():
        assert small["tflm"]["status"] == "ok", small["tflm"]
        assert small["tflm"]["agreement_with_litert"] >= 0.99
    # The int8 ONNX file takes raw audio (its log-mel in the graph) and predicts a clip as any file does.
    model = load_exported(out / files["onnx-int8"]["path"])
    clip = min((tones / "high").iterdir())
    proba = model.predict_files([clip])
    assert model.metadata["input"]["kind"] == "waveform" and proba.shape == (1, 3)
    assert abs(float(proba.sum()) - 1.0) < 0.05


def test_distill_on_sounds_reports_teacher_twin_and_student(distilled):
    out, m = distilled
    d = m["distill"]
    assert d["teacher"] in DEFAULT_AUDIO_BACKBONES and d["student"] == "small_cnn_mel"
    for key in ("teacher", "twin", "distilled"):
        assert 0.0 <= d[f"{key}_test_accuracy"] <= 1.0 and 0.0 <= d[f"{key}_val_accuracy"] <= 1.0
    if d["distilled_val_accuracy"] != d["twin_val_accuracy"]:  # a tie goes to the lower validation loss
        assert (d["distilled_val_accuracy"] > d["twin_val_accuracy"]) == (d["kept"] == "distilled")
    assert "Distillation" in (out / "report.html").read_text()


def test_curve_on_sounds_has_a_from_scratch_column(tones, tmp_path):
    from edgemaker.experiments.curve import run_curve

    template = ClassifierOptions(hparams=HParams(epochs=4), augmentation=AugmentationOptions(enabled=False))
    result = run_curve(tones, "2,all", tmp_path / "curve", repeats=1, backbone="efficientnet_lite0_mel",
                       template=template)
    assert result["task"] == "audio" and result["scratch"] == "small_cnn_mel" and "scratch_missing" not in result
    assert all(0.0 <= r["scratch"]["mean"] <= 1.0 for r in result["rows"])
    assert result["transfer_vs_scratch"].startswith("Transfer learning vs small_cnn_mel")
    assert "small_cnn_mel from scratch" in (tmp_path / "curve" / "table.txt").read_text()
    assert "from scratch (small_cnn_mel)" in (tmp_path / "curve" / "plot.svg").read_text()


@pytest.mark.parametrize("images,args,expected", [
    (False, ["--backbone", "small_cnn_mel", "--input-size", "64"], "--input-size is for images"),
    (True, ["--backbone", "small_cnn_mel"], "backbone 'small_cnn_mel' is for audio, not image"),
])
def test_bad_options_are_one_line_errors(tones, tmp_path, images, args, expected, monkeypatch, capsys):
    from edgemaker import cli

    data = make_image_folder(tmp_path / "images", per_class=4) if images else tones
    monkeypatch.setattr("sys.argv", ["edgemaker", "train", str(data), "--out", str(tmp_path / "out"), "--quiet", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: ") and expected in err and err.count("\n") == 1, err


def test_compare_names_small_cnn_for_the_datas_modality():
    """`compare --backbones aisfx,small_cnn` on sounds trains small_cnn_mel (the names decide before
    the data is read; the data's modality decides after)."""
    from edgemaker.errors import EdgemakerError
    from edgemaker.experiments.common import parse_backbones

    assert parse_backbones("aisfx,small_cnn") == ["aisfx", "small_cnn_mel"]
    assert parse_backbones("small_cnn", "audio") == ["small_cnn_mel"]
    assert parse_backbones("efficientnet_lite0,small_cnn") == ["efficientnet_lite0", "small_cnn"]
    assert parse_backbones("small_cnn") == ["small_cnn"]
    with pytest.raises(EdgemakerError, match="do not take audio input"):
        parse_backbones("efficientnet_lite0,small_cnn", "audio")
