"""The run request and the training contract: RunConfig round-trips through config.json, a strategy
registered here trains through the CLI and the web app, and every registered strategy reproduces
its run from the run folder's config.json (same split, same result)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import make_image_folder

from edgemaker.cli import cli
from edgemaker.config import RunConfig
from edgemaker.errors import EdgemakerError
from edgemaker.pipeline import train_run
from edgemaker.run_settings import config_from_settings
from edgemaker.serial import from_dict, to_dict
from edgemaker.strategies import FitContext, get_strategy, refiner_names, register_strategy, strategy_names
from edgemaker.tasks.options import ModelOptions

TESTS = Path(__file__).resolve().parent


@dataclass
class ToyRecord:
    epochs: int
    train_samples: int

    def to_dict(self) -> dict:
        return {"epochs": self.epochs, "train_samples": self.train_samples}


class ToyStrategy:
    """The plain head with a short, clean training: enough to prove the plumbing carries any strategy."""

    name = "toy"

    def fit(self, splits, config, ctx: FitContext):
        options = replace(config.options, hparams=replace(config.options.hparams, epochs=3),
                          augmentation=replace(config.options.augmentation, enabled=False))
        ctx.records["toy"] = ToyRecord(3, len(splits.train))
        return ctx.classifier.create(splits.train, splits.val, options, ctx.progress, ctx.cache)


register_strategy(ToyStrategy())  # this module is also the web worker's plugin (EDGEMAKER_PLUGINS)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("strategies") / "data", per_class=8)


def test_settings_round_trip_through_json_with_every_group():
    config = config_from_settings(
        "photos", "run", task="image", backbone="small_cnn", epochs=7, batch_size=8, learning_rate=0.01, dropout=0.1,
        label_smoothing=0.05, class_weights="none", seed=3, augment=True, augment_views=3, split="70/15/15",
        formats="onnx-fp32,tflite-int8", input_size=48, width=8, grayscale="on", flip=False, fine_tune="auto",
        fine_tune_epochs=2, max_flash="512K", max_ram=100_000, auto=True, budget="90s", distill=True,
        silence_db=-50.0, keep_silence=True, cache_dir="/tmp/c", threads=2)
    back = RunConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert back == config
    assert back.search.strategy == "auto" and back.search.auto.budget_s == 90 and back.search.budget.max_flash == 512_000
    assert back.options.cache_dir == Path("/tmp/c") and back.options.augmentation.noise_snr_db == (10.0, 30.0)
    assert back.split.seed == 3 and back.options.hparams.class_weights is None and back.export.formats[1] == "tflite-int8"


def test_implied_strategy_and_distill_student():
    assert config_from_settings("d", "o").search.strategy == "head"
    targets = config_from_settings("d", "o", max_flash="1M")
    assert targets.search.strategy == "budget" and targets.search.budget.max_flash == 1_000_000
    assert config_from_settings("d", "o", max_flash="1M", backbone="small_cnn").search.strategy == "head"  # a check
    assert config_from_settings("d", "o", distill=True).options.model.backbone == "small_cnn"
    assert config_from_settings("d", "o", strategy="toy").search.strategy == "toy"
    with pytest.raises(EdgemakerError, match="unknown training strategy 'nope': choose from .*head"):
        config_from_settings("d", "o", strategy="nope")
    with pytest.raises(ValueError, match="--budget goes with --auto"):
        config_from_settings("d", "o", budget="5m")


def test_a_field_added_to_an_option_group_round_trips_with_no_extra_code():
    @dataclass(frozen=True)
    class Extended(ModelOptions):
        depth_multiplier: float = 1.0
        tags: tuple[str, ...] = ()
        weights: Path | None = None

    value = Extended(backbone="small_cnn", depth_multiplier=0.5, tags=("a", "b"), weights=Path("/w.pt"))
    assert from_dict(Extended, json.loads(json.dumps(to_dict(value)))) == value
    with pytest.raises(ValueError, match="unknown setting 'colour' in ModelOptions"):
        from_dict(ModelOptions, {"colour": 1})


def test_a_bad_config_file_is_one_line(tmp_path):
    path = tmp_path / "config.json"
    for text, said in (("{", "not JSON"), ('{"options": {}}', "not a run config"),
                       ('{"data": {"folder": "x"}, "search": {"strategy": "head"}, "options": {"hparams": {"epochs": 0}}}',
                        "epochs, batch_size and patience must be at least 1")):
        path.write_text(text)
        result = CliRunner().invoke(cli, ["train", "--config", str(path)])
        assert result.exit_code != 0 and said in str(result.exception), (text, result.output)
    path.write_text(json.dumps(config_from_settings("x", "y").to_dict()))
    result = CliRunner().invoke(cli, ["train", "--config", str(path), "--epochs", "3"])
    assert result.exit_code != 0 and "--epochs with --config" in str(result.exception)


def test_toy_strategy_trains_through_the_cli_and_again_from_its_config(data, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", str(data), "--out", str(out), "--strategy", "toy", "--input-size", "64",
                                      "--formats", "onnx-fp32", "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["toy"] == {"epochs": 3, "train_samples": metrics["splits"]["train"]}
    assert metrics["training"]["epochs_run"] <= 3
    saved = json.loads((out / "config.json").read_text())
    assert saved["search"]["strategy"] == "toy" and saved["formats"] == ["onnx-fp32"] and saved["task"] == "image"

    again = CliRunner().invoke(cli, ["train", "--config", str(out / "config.json"), "--out", str(tmp_path / "again"),
                                     "--quiet"])
    assert again.exit_code == 0, again.output
    _same_run(out, tmp_path / "again")


def test_toy_strategy_trains_through_the_web_api(data, tmp_path, monkeypatch):
    pytest.importorskip("fastapi")
    from web_helpers import Api, png_bytes  # noqa: F401 - the in-process client

    from edgemaker.web.app import WebConfig, create_app

    # the worker is another process: it registers this module's strategy through EDGEMAKER_PLUGINS
    monkeypatch.setenv("EDGEMAKER_PLUGINS", "test_strategies")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    api = Api(create_app(WebConfig(home=tmp_path / "projects")))
    assert api.post("/api/v1/projects", json={"name": "toys", "task": "image"}).status_code == 201
    for label in ("stripes", "checks", "blobs"):
        assert api.post("/api/v1/projects/toys/classes", json={"name": label}).status_code == 201
        files = [("files", (p.name, p.read_bytes(), "image/png")) for p in sorted((data / label).iterdir())]
        assert api.post(f"/api/v1/projects/toys/classes/{label}/samples", files=files).status_code == 201
    r = api.post("/api/v1/projects/toys/train", json={"options": {"strategy": "toy"}, "formats": ["onnx-fp32"]})
    assert r.status_code == 202, r.text
    done = api.wait_run("toys", r.json()["run"])
    assert done["status"]["state"] == "done", done
    assert done["metrics"]["toy"]["epochs"] == 3 and done["metrics"]["training"]["epochs_run"] <= 3
    bad = api.post("/api/v1/projects/toys/train", json={"options": {"strategy": "nope"}})
    assert bad.status_code == 422


def _same_run(a: Path, b: Path) -> None:
    """The same split, the same float and exported accuracies, the same model chosen."""
    assert json.loads((a / "split.json").read_text())["files"] == json.loads((b / "split.json").read_text())["files"]
    ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (a, b))
    assert ma["backbone"]["name"] == mb["backbone"]["name"]
    assert ma["val"] == mb["val"] and ma["test"]["accuracy"] == mb["test"]["accuracy"]
    assert [(e["format"], e["test_accuracy"]) for e in ma["exports"]] == [(e["format"], e["test_accuracy"])
                                                                           for e in mb["exports"]]
    for key in ("auto", "budget_search", "distill"):
        assert (key in ma) == (key in mb)
        if key in ma:
            assert ma[key].get("winner", ma[key].get("kept")) == mb[key].get("winner", mb[key].get("kept"))


def _small_searches(monkeypatch) -> None:
    from edgemaker.tasks import auto, budget_search

    monkeypatch.setattr(auto, "IMAGE_CANDIDATES", (("efficientnet_lite0", 64), ("small_cnn", None)))
    monkeypatch.setattr(budget_search, "SIZES", (64,))
    monkeypatch.setattr(budget_search, "SMALL_CNN", ((8, 32),))


RUNS = {  # strategy or refiner -> the settings of a small run that uses it
    "head": {"input_size": 64, "epochs": 8},
    "auto": {"auto": True, "budget": "10m", "epochs": 8},
    "budget": {"max_flash": 80_000, "max_ram": 128_000, "epochs": 6, "augment_views": 1},
    "distill": {"distill": True, "input_size": 32, "width": 8, "epochs": 5, "augment_views": 1},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in [*strategy_names(), *refiner_names()] if n != "toy"])
def test_every_strategy_reproduces_its_run_from_config_json(name, data, tmp_path, monkeypatch):
    if name not in RUNS:
        pytest.fail(f"strategy {name!r} is registered but has no round-trip run here: add one to RUNS")
    if name == "budget":
        pytest.importorskip("litert_torch")
    _small_searches(monkeypatch)
    config = config_from_settings(data, tmp_path / "first", formats="onnx-fp32", **RUNS[name])
    assert name in (config.search.strategy, "distill" if config.search.distill else None)
    train_run(config)
    again = replace(RunConfig.load(tmp_path / "first" / "config.json"), out=str(tmp_path / "second"))
    assert again == replace(config, export=again.export, out=again.out)  # budget adds tflite-int8 to confirm on
    train_run(again)
    _same_run(tmp_path / "first", tmp_path / "second")


def test_strategy_contract():
    """Every registered strategy has a name it is found by and a fit method; refiners a refine method."""
    from edgemaker.strategies import get_refiner

    assert {"head", "auto", "budget"} <= set(strategy_names()) and "distill" in refiner_names()
    for name in strategy_names():
        s = get_strategy(name)
        assert s.name == name and callable(s.fit)
    for name in refiner_names():
        r = get_refiner(name)
        assert r.name == name and callable(r.refine)
