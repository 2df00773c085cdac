"""The acceptance runs on real photos (../shared/data); skipped cleanly where it is absent."""

from __future__ import annotations

import json

from click.testing import CliRunner

from conftest import shared_data, tree_digest
from edgemaker.cli import cli


def test_caltech_dev10_defaults_reach_97_percent_and_int8_keeps_it(tmp_path):
    data = shared_data("caltech-dev10")
    before = tree_digest(data)
    result = CliRunner().invoke(cli, ["train", str(data), "--out", str(tmp_path / "run"), "--json", "--formats",
                                      "onnx-fp32,onnx-int8,tflite-fp32,tflite-int8"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    exports = {e["format"]: e for e in metrics["exports"]}
    assert metrics["test"]["accuracy"] >= 0.97
    assert exports["onnx-fp32"]["test_accuracy"] >= 0.97
    assert exports["onnx-fp32"]["test_accuracy"] - exports["onnx-int8"]["test_accuracy"] <= 0.01
    assert exports["onnx-int8"]["size_bytes"] <= 0.3 * exports["onnx-fp32"]["size_bytes"]
    # The full-int8 TFLite file (int8 weights, activations, input and output) against its float source.
    assert exports["tflite-int8"]["size_bytes"] <= 0.3 * exports["tflite-fp32"]["size_bytes"]
    assert exports["tflite-fp32"]["test_accuracy"] - exports["tflite-int8"]["test_accuracy"] <= 0.005
    assert tree_digest(data) == before


def test_caltech_hard40_int8_files_hold_against_fp32(tmp_path):
    """Fine-grained photos (look-alike pairs), one cold default run: both int8 files within a point of
    their fp32 source and agreeing with it on at least 97% of the test photos."""
    data = shared_data("caltech-hard40")
    result = CliRunner().invoke(cli, ["train", str(data), "--out", str(tmp_path / "run"), "--json", "--formats",
                                      "onnx-fp32,onnx-int8,tflite-fp32,tflite-int8"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    exports = {e["format"]: e for e in metrics["exports"]}
    for runtime in ("onnx", "tflite"):
        fp32, int8 = exports[f"{runtime}-fp32"], exports[f"{runtime}-int8"]
        assert fp32["test_accuracy"] - int8["test_accuracy"] <= 0.01, (runtime, fp32, int8)
        assert int8["agreement_with_float"] >= 0.97, (runtime, int8)
    assert metrics["training"]["int8_head_choice"]["onnx"]["why"]
