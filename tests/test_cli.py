"""The CLI as a user runs it: train -> predict -> evaluate, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from conftest import make_image_folder, tree_digest
from edgemaker.cli import cli


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    data = make_image_folder(base / "my photos", per_class=12)
    before = tree_digest(data)
    result = CliRunner().invoke(cli, ["train", str(data), "--out", str(base / "run"), "--augment-views", "1",
                                      "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert tree_digest(data) == before  # the data folder was only read
    return data, base / "run", json.loads(result.stdout)


def test_train_writes_a_complete_run_folder(run):
    data, out, metrics = run
    for name in ("metrics.json", "report.html", "labels.txt", "split.json", "config.json",
                 "model_fp32.onnx", "model_int8.onnx", "model_int8.tflite", "model_int8.tflite.json"):
        assert (out / name).is_file(), name
    assert metrics == json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["blobs", "checks", "stripes"]
    assert sum(metrics["splits"].values()) == 36
    assert 0 <= metrics["test"]["accuracy"] <= 1
    assert set(metrics["timings"]) >= {"validate_s", "extract_s", "train_s", "export_s", "total_s"}
    assert len(metrics["confusion_matrix"]) == 3 and set(metrics["per_class"]) == set(metrics["classes"])
    formats = {e["format"]: e for e in metrics["exports"]}
    assert set(formats) == {"onnx-fp32", "onnx-int8", "tflite-int8"}  # the defaults
    for e in formats.values():
        assert e["size_bytes"] == (out / e["path"]).stat().st_size
        assert e["latency_ms"] > 0 and 0 <= e["test_accuracy"] <= 1
    assert formats["onnx-int8"]["size_bytes"] < 0.3 * formats["onnx-fp32"]["size_bytes"]
    assert formats["tflite-int8"]["peak_ram_bytes"] > 0 and not (out / "model_fp32.tflite").exists()
    split = json.loads((out / "split.json").read_text())
    assert len(split["files"]) == 36 and {f["split"] for f in split["files"]} == {"train", "val", "test"}


def test_report_is_self_contained_and_has_every_section(run):
    html = (run[1] / "report.html").read_text()
    for needle in ("Exported files", "onnx-int8", "Dataset", "accuracy</text>", "true \\ predicted",
                   "precision", "Misclassified test images"):
        assert needle in html, needle
    assert "http://" not in html and "https://" not in html and "<script src" not in html


def test_a_warm_retrain_reuses_every_embedding(run, tmp_path):
    data, _, _ = run
    result = CliRunner().invoke(cli, ["train", str(data), "--out", str(tmp_path / "again"), "--augment-views", "1",
                                      "--epochs", "5", "--formats", "onnx-fp32", "--json"], catch_exceptions=False)
    metrics = json.loads(result.stdout)
    assert metrics["training"]["epochs_run"] <= 5
    assert [e["format"] for e in metrics["exports"]] == ["onnx-fp32"]
    assert not (tmp_path / "again" / "model_int8.onnx").exists()


def test_a_class_too_small_to_measure_is_named_in_a_warning(run, tmp_path):
    data, _, metrics = run
    assert not [w for w in metrics["warnings"] if "rests on too few" in w]  # 12 a class: none flagged
    small = make_image_folder(tmp_path / "small", per_class=12)
    for extra in sorted((small / "checks").iterdir())[4:]:
        extra.unlink()
    result = CliRunner().invoke(cli, ["train", str(small), "--out", str(tmp_path / "run"), "--formats", "onnx-fp32",
                                      "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [warning] = [w for w in json.loads(result.stdout)["warnings"] if "rests on too few" in w]
    assert warning.startswith("class 'checks' has only 4 images (") and "add at least 10 images" in warning
    assert warning in (tmp_path / "run" / "report.html").read_text().replace("&#x27;", "'")


def test_predict_gives_top_k_from_the_model_file_alone(run, tmp_path):
    data, out, _ = run
    model = tmp_path / "elsewhere.onnx"
    model.write_bytes((out / "model_int8.onnx").read_bytes())  # no labels.txt beside it
    files = [str(data / "stripes" / "stripes_00.png"), str(data / "blobs" / "blobs_01.png")]
    result = CliRunner().invoke(cli, ["predict", str(model), *files, "--top-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    preds = json.loads(result.stdout)["predictions"]
    assert [len(p["top"]) for p in preds] == [2, 2]
    assert preds[0]["top"][0]["probability"] >= preds[0]["top"][1]["probability"]
    text = CliRunner().invoke(cli, ["predict", str(model), files[0]])
    assert text.output.startswith(files[0] + ": ")


def test_evaluate_on_a_new_folder(run, tmp_path):
    _, out, _ = run
    holdout = make_image_folder(tmp_path / "holdout", per_class=4, seed=9)
    result = CliRunner().invoke(cli, ["evaluate", str(out / "model_int8.onnx"), str(holdout), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["samples"] == 12 and 0 <= report["accuracy"] <= 1
    assert set(report["per_class"]) == {"blobs", "checks", "stripes"}


def edgemaker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgemaker", *args], capture_output=True, text=True,
                          env={**os.environ}, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_bad_inputs_give_one_clear_line(tmp_path, run):
    data, out, _ = run
    assert_one_line_error(edgemaker("train", str(tmp_path / "nope"), "--out", str(tmp_path / "o")), "folder not found")
    single = make_image_folder(tmp_path / "single", classes=("cat",), per_class=4)
    assert_one_line_error(edgemaker("train", str(single), "--out", str(tmp_path / "o")), "only one class", str(single))
    assert_one_line_error(edgemaker("train", str(data), "--out", str(data / "run")), "inside the data folder")
    assert_one_line_error(edgemaker("train", str(data), "--out", str(tmp_path / "o"), "--backbone", "vgg99"),
                          "unknown backbone 'vgg99'")
    assert_one_line_error(edgemaker("train", str(data), "--out", str(tmp_path / "o"), "--formats", "onnx-int4"),
                          "unknown export format")
    assert_one_line_error(edgemaker("train", str(data), "--out", str(tmp_path / "o"), "--epochs", "0"),
                          "invalid option")
    for option, value in (("--learning-rate", "inf"), ("--split", "1/1/nan")):  # trained, and a traceback
        assert_one_line_error(edgemaker("train", str(data), "--out", str(tmp_path / "o"), option, value),
                              "invalid option", "positive")
    for command in (("train", str(data)), ("compare", str(data), "--backbones", "efficientnet_lite0")):
        assert_one_line_error(edgemaker(*command, "--out", str(tmp_path / "o"), "--threads", "-2"),
                              "invalid option", "--threads")  # was a LiteRT traceback at export
    assert_one_line_error(edgemaker("train", str(data), "--out", str(tmp_path / "o"), "--threads", "-2"),
                          "invalid option", "--threads")  # was a LiteRT traceback at export
    for command in (("train", str(data)), ("compare", str(data), "--backbones", "efficientnet_lite0"),
                    ("data", "split", str(data))):  # numpy's generators take 0 .. 2**32 - 1: was a traceback
        assert_one_line_error(edgemaker(*command, "--out", str(tmp_path / "o"), "--seed", "-1"),
                              "invalid option", "--seed must be within 0..4294967295 (got -1)")
    assert_one_line_error(edgemaker("compare", str(data), "--backbones", "efficientnet_lite0", "--out", str(tmp_path / "o"),
                                    "--seed", "4294967295", "--repeats", "2"), "invalid option", "use --seed 4294967294")
    wrong = make_image_folder(tmp_path / "wrong", classes=("stripes", "zebras"), per_class=3)
    assert_one_line_error(edgemaker("evaluate", str(out / "model_int8.onnx"), str(wrong)),
                          "class 'zebras' is not one of the model's labels")
    assert_one_line_error(edgemaker("predict", str(tmp_path / "missing.onnx"), "x.png"), "model file not found")


def test_predict_reports_a_bad_file_and_still_answers_for_the_rest(run, tmp_path):
    data, out, _ = run
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    proc = edgemaker("predict", str(out / "model_int8.onnx"), str(bad), str(data / "checks" / "checks_00.png"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"error: {bad}:" in proc.stderr
    assert "checks_00.png: " in proc.stdout
    gone = tmp_path / "gone.jpg"
    proc = edgemaker("predict", str(out / "model_int8.onnx"), str(gone))
    assert proc.returncode == 1 and f"error: {gone}: file not found" in proc.stderr


def test_backbones_lists_the_registry():
    result = CliRunner().invoke(cli, ["backbones", "--json"])
    names = [b["name"] for b in json.loads(result.stdout)["backbones"]]
    assert names[:3] == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


def test_validate_command_summarises_without_training(run):
    result = CliRunner().invoke(cli, ["validate", str(run[0])])
    assert result.exit_code == 0 and "36 usable images in 3 classes" in result.output


def test_the_training_line_says_what_was_fitted():
    """A probe has no epochs; a softmax head stopped early says so; a refit for fixed epochs gives its count."""
    from types import SimpleNamespace

    import numpy as np

    from edgemaker.heads.probe import ProbeHead
    from edgemaker.heads.softmax import SoftmaxHead
    from edgemaker.pipeline import _log_training

    class Lines(list):
        def log(self, message: str) -> None:
            self.append(message)

    x = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    y = np.array(["a", "b"] * 20)
    fitted = [ProbeHead(C=0.5).fit(x, y), SoftmaxHead(epochs=6, patience=2).fit(x, y, validation=(x, y[::-1])),
              SoftmaxHead(epochs=6).fit(x, y)]
    lines = Lines()
    for head in fitted:
        _log_training(SimpleNamespace(selection=None, head=head), lines)
    assert lines[0] == "trained: logistic-regression probe, C 0.5 (one convex fit, no epochs)"
    assert lines[1].startswith("trained: best epoch ") and lines[1].endswith("run (early stopping)")
    assert lines[2] == "trained: 6 epochs"
