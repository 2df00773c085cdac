"""`edgemaker compare` and `edgemaker curve` (issue 12) on generated shapes: the five output files,
a sane results.json, a second compare that computes nothing again (cache counters, not seconds), the
curve's table and flattening sentence, the recommendation rule, and the CLI's one-line errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import make_image_folder, tree_digest

from edgemaker.backbones import (
    BackboneSpec,
    ImageInput,
    WeightsSource,
    register_backbone,
    unregister_backbone,
)
from edgemaker.experiments.compare import recommend
from edgemaker.experiments.curve import flattening_sentence, parse_sizes
from edgemaker.experiments.output import FILES

TINY = "tiny_experiments"


def _fast():
    from edgemaker.tasks.options import ClassifierOptions, HParams

    return ClassifierOptions(hparams=HParams(epochs=15, patience=5, learning_rate=3e-3))


def _tiny_module():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, stride=2),
                               torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small pretrained-style backbone (file weights), so the test needs no large network."""
    import torch

    from edgemaker.backbones.weights import load_state_dict

    path = tmp_path_factory.mktemp("tiny") / "tiny.pth"
    torch.save(_tiny_module().state_dict(), path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    spec = BackboneSpec(TINY, "image", 16, WeightsSource("file", str(path), sha), "MIT", 1400,
                        image=ImageInput(32, (127.5,) * 3, (127.5,) * 3))

    @register_backbone(spec)
    def build(spec, weights):
        module = _tiny_module()
        module.load_state_dict(load_state_dict(weights))
        return module.eval()

    yield TINY
    unregister_backbone(TINY)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("shapes") / "data", per_class=12)


class Counter:
    def __init__(self, mp: pytest.MonkeyPatch, owner, name: str) -> None:
        self.calls = 0
        original = getattr(owner, name)

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        mp.setattr(owner, name, counted)


@pytest.fixture(scope="module")
def compared(tiny, shapes, tmp_path_factory) -> dict:
    """The same compare twice, counting network trainings and int8 quantizations in each run."""
    from edgemaker.experiments.compare import run_compare
    from edgemaker.export.tflite import TFLiteExporter
    from edgemaker.tasks import classifier

    root = tmp_path_factory.mktemp("compare")
    before = tree_digest(shapes)
    out = {}
    for run in ("first", "second"):
        with pytest.MonkeyPatch.context() as mp:
            trainings = Counter(mp, classifier, "train_backbone")
            quantizations = Counter(mp, TFLiteExporter, "quantize")
            result = run_compare(shapes, f"small_cnn,{tiny}", root / run, repeats=2, template=_fast())
        out[run] = {"result": result, "trainings": trainings.calls, "quantizations": quantizations.calls,
                    "dir": root / run}
    out["data_untouched"] = tree_digest(shapes) == before
    return out


def test_compare_writes_every_file_and_a_sane_json(compared, tiny):
    first = compared["first"]
    for name in FILES:
        assert (first["dir"] / name).stat().st_size > 0, name
    saved = json.loads((first["dir"] / "results.json").read_text())
    assert saved["kind"] == "compare" and saved["repeats"] == 2 and saved["seeds"] == [0, 1]
    rows = {r["backbone"]: r for r in saved["rows"]}
    assert set(rows) == {"small_cnn", tiny}
    for r in rows.values():
        assert r["parameters"] > r["backbone_parameters"] > 0 and r["depth"] >= 3
        assert 0 <= r["val_accuracy"]["min"] <= r["val_accuracy"]["mean"] <= r["val_accuracy"]["max"] <= 1
        assert len(r["test_accuracy"]["values"]) == 2 and r["extract_s_per_sample"] > 0
        assert r["best_epoch"] <= r["epochs_run"] and r["fp32_bytes"] > 0
        if not r["int8"].get("refused"):
            assert (first["dir"] / r["backbone"] / "model_int8.tflite").stat().st_size == r["int8_bytes"]
            assert r["int8_bytes"] < r["fp32_bytes"] and r["peak_ram_bytes"] > 0 and r["macs"] > 0
            assert 0 <= r["int8_test_accuracy"] <= 1
    assert rows["small_cnn"]["network"]["trained"] == "from scratch"
    assert saved["recommendation"]["backbone"] in rows
    assert all(0 <= v <= 1 for v in saved["recommendation"]["scores"].values())
    assert saved["recommendation"]["sentence"] in (first["dir"] / "table.txt").read_text()
    md = (first["dir"] / "table.md").read_text()
    assert "| backbone |" in md and "small_cnn" in md
    page = (first["dir"] / "index.html").read_text()
    assert "<svg" in page and "<table>" in page and "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert compared["data_untouched"]


def test_second_compare_reuses_embeddings_networks_and_int8_files(compared):
    first, second = compared["first"], compared["second"]
    assert first["result"]["cache"]["new_embedding_rows"] > 0
    assert first["trainings"] == 2 and first["quantizations"] >= 1  # small_cnn for each seed; int8 files
    assert second["result"]["cache"]["new_embedding_rows"] == 0
    assert second["trainings"] == 0 and second["quantizations"] == 0
    assert second["result"]["cache"]["int8_files_reused"] == 2 and second["result"]["cache"]["networks_reused"] == 1
    for a, b in zip(first["result"]["rows"], second["result"]["rows"]):  # the same models, so the same numbers
        assert a["val_accuracy"] == b["val_accuracy"] and a["test_accuracy"] == b["test_accuracy"]
        assert a["int8_bytes"] == b["int8_bytes"] and a["int8_test_accuracy"] == b["int8_test_accuracy"]


def _row(name, val, test, size, int8_val=None):
    def acc(v):
        return {"mean": v, "std": 0.0, "min": v, "max": v, "values": [v]}

    return {"backbone": name, "val_accuracy": acc(val), "test_accuracy": acc(test), "int8_bytes": size,
            "fp32_bytes": 4 * size, "int8_val_accuracy": int8_val}


def test_recommendation_is_chosen_on_validation_never_test():
    rows = [_row("big", 0.95, 0.90, 5_000_000), _row("mid", 0.945, 0.99, 2_000_000), _row("tiny", 0.90, 0.99, 50_000)]
    rec = recommend(rows)
    assert rec["backbone"] == "mid" and rec["best_by_validation"] == "big"  # within 1 point, smaller
    assert "within 1.0 points" in rec["sentence"]
    assert recommend([_row("a", 0.99, 0.5, 10), _row("b", 0.9, 1.0, 1)])["backbone"] == "a"
    # what ships counts: a float model as good as the best whose int8 file is not, is not picked
    rows = [_row("a", 0.972, 0.95, 4_760_000, int8_val=0.972), _row("b", 0.968, 0.84, 4_100_000, int8_val=0.889)]
    assert recommend(rows)["backbone"] == "a"


def test_curve_table_plot_and_flattening_sentence(tiny, shapes, tmp_path):
    from edgemaker.experiments.curve import run_curve

    result = run_curve(shapes, "3,50", tmp_path / "curve", repeats=2, backbone=tiny, template=_fast())
    assert result["kind"] == "curve" and [r["requested"] for r in result["rows"]] == [3, 50]
    small, capped = result["rows"]
    assert small["per_class"] == 3 and small["train_samples"] == 9 and not small["capped"]
    assert capped["capped"] and capped["per_class"] == result["smallest_class"]["train_samples"] < 50
    for r in result["rows"]:
        assert len(r["transfer"]["values"]) == 2 and len(r["scratch"]["values"]) == 2
    text = (tmp_path / "curve" / "table.txt").read_text()
    assert "With transfer learning" in text.replace("with transfer", "With transfer") and "50 (capped:" in text
    assert result["flattening"] in text and ("flattens at" in result["flattening"] or "not flattened" in result["flattening"])
    assert "<polyline" in (tmp_path / "curve" / "plot.svg").read_text()


def test_flattening_sentence_names_the_size_where_gains_fall_below_a_point():
    def row(n, mean):
        return {"requested": n, "per_class": n, "mean_per_class": n, "capped": False,
                "transfer": {"mean": mean, "min": mean, "max": mean}, "scratch": None}

    assert "flattens at 30 per class" in flattening_sentence([row(10, 0.70), row(30, 0.85), row(100, 0.855)])
    assert "has not flattened" in flattening_sentence([row(10, 0.70), row(30, 0.85), row(100, 0.90)])


def test_parse_sizes():
    assert parse_sizes("30, 10,all,10") == [10, 30, None]


@pytest.mark.parametrize("args, message", [
    (["compare", "{data}", "--backbones", "small_cnn,nope", "--out", "{tmp}/o"], "unknown backbone 'nope': choose one of"),
    (["compare", "{data}", "--backbones", "small_cnn,aisfx", "--out", "{tmp}/o"], "do not take image input"),
    (["compare", "{data}", "--backbones", "aisfx", "--out", "{tmp}/o"], "for this data choose from efficientnet_lite0"),
    (["compare", "{data}", "--backbones", "small_cnn", "--out", "{data}/o"], "inside the data folder"),
    (["compare", "{tmp}/missing", "--backbones", "small_cnn", "--out", "{tmp}/o"], "not a folder"),
    (["compare", "{data}", "--backbones", "small_cnn", "--repeats", "0", "--out", "{tmp}/o"], "--repeats 0"),
    (["curve", "{data}", "--per-class", "10,lots", "--out", "{tmp}/o"], "'lots' is not a positive whole number"),
    (["curve", "{data}", "--per-class", "0", "--out", "{tmp}/o"], "'0' is not a positive whole number"),
])
def test_cli_errors_are_one_line(args, message, shapes, tmp_path, monkeypatch, capsys):
    from edgemaker import cli

    monkeypatch.setattr("sys.argv", ["edgemaker", *(a.format(data=shapes, tmp=tmp_path) for a in args)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()
