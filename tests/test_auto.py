"""--auto: the search picks by validation accuracy within the time budget, skips what does not fit
the budget or the device, says why, and the run records every candidate."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from conftest import make_image_folder
from edgemaker.errors import EdgemakerError
from edgemaker.pipeline import train_run
from edgemaker.tasks import auto
from edgemaker.tasks.options import AutoOptions, ClassifierOptions, HParams


def _samples(n: int, prefix: str):
    return [SimpleNamespace(content=f"{prefix}{i}", label="ab"[i % 2], path=None) for i in range(n)]


class _Scripted:
    """A stand-in Classifier: validation accuracy/loss per backbone@size, scripted; `test` scores are
    the reverse, so a search that looked at them would pick another winner."""

    modality = "image"
    val = {}
    seen: list = []

    def __init__(self, name, size):
        self.spec = SimpleNamespace(name=name, image=SimpleNamespace(size=size), parameters=3_400_000)
        acc, loss = self.val[(name, size)]
        self._ev = SimpleNamespace(accuracy=acc, loss=loss)
        self.head_selection = SimpleNamespace(chosen={"views": "clean"}, seconds=0.01)
        self.timings = {"extract_s": 0.01, "train_s": 0.01}

    @classmethod
    def create(cls, train, validation, options, progress, cache):
        cls.seen.append(options.model)
        size = options.model.input_size or auto.get_spec(options.model.backbone).image.size
        model = cls(options.model.backbone, size)
        # as long as the probe's 1 ms per Lite0@224 row predicts
        model.timings["extract_s"] = (3 * len(train) + len(validation)) * (size / 224) ** 2 * 0.001
        return model

    def evaluate(self, samples):
        assert all(s.content.startswith("v") for s in samples), "only validation samples may be scored"
        return self._ev


@pytest.fixture
def scripted(monkeypatch):
    monkeypatch.setattr(auto, "IMAGE_CANDIDATES", (("efficientnet_lite0", 128), ("efficientnet_lite0", 160),
                                                   ("efficientnet_lite0", None)))
    monkeypatch.setattr(auto, "probe", lambda c, options: (0.001, 0.0))  # 1 ms per Lite0@224 row
    monkeypatch.setattr(auto, "_rows_to_extract", lambda spec, samples, views, options, cache: len(samples) * (1 + views))
    _Scripted.val = {("efficientnet_lite0", 128): (0.80, 0.5), ("efficientnet_lite0", 160): (0.90, 0.4),
                     ("efficientnet_lite0", 224): (0.90, 0.3)}
    _Scripted.seen = []
    return _Scripted


def _search(budget_s=600.0, n_train=40, **kw):
    from edgemaker.progress import SilentProgress

    return auto.search(_Scripted, _samples(n_train, "t"), _samples(10, "v"), ClassifierOptions(hparams=HParams(seed=0)),
                       AutoOptions(budget_s), SilentProgress(), None, **kw)


def test_picks_by_validation_accuracy_then_loss(scripted):
    clf, record = _search()
    assert [t["name"] for t in record.tried] == ["efficientnet_lite0@128", "efficientnet_lite0@160",
                                                 "efficientnet_lite0@224"]
    assert (clf.spec.name, clf.spec.image.size) == ("efficientnet_lite0", 224)  # tie on accuracy, lower loss
    assert record.winner == "efficientnet_lite0@224" and "validation loss" in record.why
    assert not record.skipped


def test_skips_what_does_not_fit_the_time_left(scripted):
    # 2,000 training images with 2 views at 1 ms per Lite0@224 row: 128 px ~2 s, 160 px ~3 s, 224 px ~6 s.
    _, record = _search(budget_s=5.0, n_train=2000)
    assert [t["name"] for t in record.tried] == ["efficientnet_lite0@128", "efficientnet_lite0@160"]
    assert [s["name"] for s in record.skipped] == ["efficientnet_lite0@224"]
    assert "left of the budget" in record.skipped[0]["reason"]


def test_budget_too_small_for_one_candidate_is_one_line(scripted):
    with pytest.raises(EdgemakerError) as exc:
        _search(budget_s=0.5, n_train=2000)
    msg = str(exc.value)
    assert "\n" not in msg and "too small for even one candidate" in msg and "--budget" in msg
    assert not scripted.seen  # nothing was trained


def test_flash_budget_keeps_only_candidates_that_fit(scripted, monkeypatch):
    monkeypatch.setattr(auto, "IMAGE_CANDIDATES", (("efficientnet_lite0", 128), ("small_cnn", None)))
    scripted.val[("small_cnn", 32)] = (0.7, 0.9)
    clf, record = _search(max_flash=1_000_000)
    assert clf.spec.name == "small_cnn"  # less accurate than Lite0, but the only one that fits
    assert record.skipped[0]["name"] == "efficientnet_lite0@128" and "--max-flash" in record.skipped[0]["reason"]
    with pytest.raises(EdgemakerError, match="no candidate fits the device budget"):
        _search(max_flash=10_000)


def test_predicted_ram_falls_with_input_size():
    small, large = (auto.predicted_size(c, 3) for c in auto.candidates("image", ClassifierOptions())[:3:2])
    assert small["ram_bytes"] < large["ram_bytes"] and small["flash_bytes"] == large["flash_bytes"]


def test_budget_parsing():
    assert AutoOptions.parse_budget("5m") == 300 and AutoOptions.parse_budget("90s") == 90
    assert AutoOptions.parse_budget("1h") == 3600 and AutoOptions.parse_budget("42") == 42
    with pytest.raises(ValueError):
        AutoOptions.parse_budget("soon")


def test_auto_run_records_candidates_fits_flash_and_budget(tmp_path, monkeypatch):
    """A real run: Lite0 at 64 px against small_cnn, with a flash budget only small_cnn meets; the
    metrics, the report and the int8 file agree."""
    monkeypatch.setattr(auto, "IMAGE_CANDIDATES", (("efficientnet_lite0", 64), ("efficientnet_lite0", 96),
                                                   ("small_cnn", None)))
    data = make_image_folder(tmp_path / "data", per_class=12)
    options = ClassifierOptions(hparams=HParams(epochs=15, patience=5))
    t0 = time.perf_counter()
    m = train_run(data, tmp_path / "run", options, formats=["onnx-fp32"], auto=AutoOptions(300))
    assert time.perf_counter() - t0 < 300 * 1.1
    a = m["auto"]
    names = [t["name"] for t in a["candidates"]]
    assert names == ["efficientnet_lite0@64", "efficientnet_lite0@96", "small_cnn@32"]
    best = max(a["candidates"], key=lambda t: (t["val_accuracy"], -t["val_loss"]))
    assert a["winner"] == best["name"] and m["backbone"]["name"] == best["backbone"]
    assert m["val"]["accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-4)
    html = (tmp_path / "run" / "report.html").read_text("utf-8")
    assert "Chosen automatically" in html and all(n in html for n in names)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["auto"]["winner"] == a["winner"]

    m2 = train_run(data, tmp_path / "run2", options, formats=["onnx-int8"], auto=AutoOptions(300), max_flash=200_000)
    assert m2["backbone"]["name"] == "small_cnn"
    assert {s["name"] for s in m2["auto"]["skipped"]} == {"efficientnet_lite0@64", "efficientnet_lite0@96"}
    assert m2["exports"][0]["size_bytes"] <= 200_000  # confirmed on the real file
    # Seeded: the same search on the same cache chooses the same and scores the same.
    m3 = train_run(data, tmp_path / "run3", options, formats=["onnx-fp32"], auto=AutoOptions(300))
    assert [(t["name"], t["val_accuracy"]) for t in m3["auto"]["candidates"]] == \
        [(t["name"], t["val_accuracy"]) for t in a["candidates"]]


def test_cli_budget_errors_are_one_line(tmp_path):
    from click.testing import CliRunner

    from edgemaker.cli import cli

    data = make_image_folder(tmp_path / "data", per_class=6)
    r = CliRunner().invoke(cli, ["train", str(data), "--out", str(tmp_path / "o"), "--budget", "5m"])
    assert r.exit_code != 0 and "--budget goes with --auto" in str(r.exception or r.output)
    r = CliRunner().invoke(cli, ["train", str(data), "--out", str(tmp_path / "o"), "--auto", "--budget", "1s"])
    assert isinstance(r.exception, EdgemakerError) and "too small for even one candidate" in str(r.exception)
    assert "\n" not in str(r.exception)


def test_web_options_round_trip(tmp_path):
    """The Advanced panel's fields reach the run as options: augmentation unset is chosen on
    validation (not forced on), "automatic (N minutes)" is AutoOptions(N * 60)."""
    from web_helpers import Api

    pytest.importorskip("fastapi")
    from edgemaker.web.app import WebConfig, create_app
    from edgemaker.web.worker import auto_from_request, options_from_request

    options, _ = options_from_request({"options": {"epochs": 5}})
    assert options.augmentation.enabled is None and auto_from_request({"options": {}}) is None
    assert options_from_request({"options": {"augment": False}})[0].augmentation.enabled is False
    assert options_from_request({"options": {"augment": None}})[0].augmentation.enabled is None
    assert auto_from_request({"options": {"auto_minutes": 5}}) == AutoOptions(300.0)
    for bad in ({"auto_minutes": "soon"}, {"auto_minutes": 0}, {"auto_minutes": True}):
        with pytest.raises(ValueError):
            auto_from_request({"options": bad})
    with pytest.raises(ValueError):
        options_from_request({"options": {"augment": "yes"}})
    # Fine-tune depth from the Advanced panel: off by default, a block count, or chosen on validation.
    assert not options.fine_tune.active
    assert options_from_request({"options": {"fine_tune": 2}})[0].fine_tune.depth == 2
    assert options_from_request({"options": {"fine_tune": "auto"}})[0].fine_tune.depth == "auto"
    for bad in ("deep", True, -1, 1.5):
        with pytest.raises(ValueError):
            options_from_request({"options": {"fine_tune": bad}})

    api = Api(create_app(WebConfig(home=tmp_path / "projects")))
    assert api.get("/api/v1/options?task=image").json()["auto"]["default_minutes"] == 10
    assert api.post("/api/v1/projects", json={"name": "p", "task": "image"}).status_code == 201
    r = api.post("/api/v1/projects/p/train", json={"options": {"auto_minutes": -1}})
    assert r.status_code == 422 and "auto_minutes" in r.text  # the schema bounds it: a 422 naming the field
