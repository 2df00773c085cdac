"""The runs page's API in-process: two real runs summarised and compared, Grad-CAM in a real run's
report, and compare/curve result folders listed and served without leaving their folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from web_helpers import Api, assert_error  # noqa: E402
from web_runs_helpers import P, shared_two_runs  # noqa: E402

from edgemaker.web.app import WebConfig, create_app  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return shared_two_runs(tmp_path_factory)


def _items(summary: dict) -> dict:
    return {i["key"]: i for i in summary["settings"] + summary["results"]}


def test_history_lists_every_run_with_settings_and_results(trained):
    home, a, b = trained
    api = Api(create_app(WebConfig(home=home)))
    h = api.get(f"{P}/shapes/history")
    assert h.status_code == 200, h.text
    runs = h.json()["runs"]
    assert [r["id"] for r in runs] == [b, a]  # newest first
    newer, older = _items(runs[0]), _items(runs[1])
    assert older["backbone"]["value"] == "efficientnet_lite0" and newer["backbone"]["value"] == "small_cnn"
    assert older["augmentation"]["value"] == "off" and newer["augmentation"]["value"] == "on"
    assert older["epochs"]["value"] == 30 and newer["epochs"]["value"] == 20
    for items, run in ((older, a), (newer, b)):
        metrics = json.loads((home / "shapes" / "runs" / run / "metrics.json").read_text())
        assert items["test_accuracy"]["value"] == metrics["test"]["accuracy"]
        assert items["size:onnx-int8"]["value"] == (home / "shapes" / "runs" / run / "model_int8.onnx").stat().st_size
        assert items["time:total_s"]["value"] == metrics["timings"]["total_s"]
    assert runs[0]["report"].endswith(f"/runs/{b}/files/report.html")
    assert api.get(runs[0]["report"]).status_code == 200


def test_compare_shows_what_differs_with_deltas(trained):
    home, a, b = trained
    api = Api(create_app(WebConfig(home=home)))
    c = api.get(f"{P}/shapes/history/compare", params={"a": a, "b": b})
    assert c.status_code == 200, c.text
    body = c.json()
    rows = {r["key"]: r for r in body["rows"]}
    assert rows["backbone"]["differs"] and rows["backbone"]["a"] == "efficientnet_lite0"
    assert rows["epochs"]["delta"] == -10 and not rows["batch_size"]["differs"]
    size = rows["size:onnx-int8"]
    assert size["delta"] == size["b"] - size["a"] < 0 and size["better"] == "b"  # small_cnn is far smaller
    acc = rows["test_accuracy"]
    assert acc["delta"] == pytest.approx(acc["b"] - acc["a"])
    assert acc["better"] == (None if acc["a"] == acc["b"] else ("a" if acc["a"] > acc["b"] else "b"))
    assert body["differing_settings"] >= 4 and body["differing_results"] >= 3
    same = api.get(f"{P}/shapes/history/compare", params={"a": a, "b": a}).json()
    assert same["differing_settings"] == 0 and same["differing_results"] == 0

    assert_error(api.get(f"{P}/shapes/history/compare", params={"a": "x", "b": b}), 422, "invalid_request")
    assert_error(api.get(f"{P}/shapes/history/compare", params={"a": a}), 422, "invalid_request")
    assert_error(api.get(f"{P}/shapes/history/compare", params={"a": a, "b": "20000101-000000-abcd"}), 404, "not_found")
    assert_error(api.get(f"{P}/nope/history"), 404, "not_found")


def test_openapi_documents_the_runs_routes(trained):
    home, _, _ = trained
    schema = Api(create_app(WebConfig(home=home))).get("/api/v1/openapi.json").json()
    for path, model in (("/api/v1/projects/{name}/history", "History"),
                        ("/api/v1/projects/{name}/history/compare", "Comparison")):
        responses = schema["paths"][path]["get"]["responses"]
        assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith(model)
        for status in ("404", "422"):
            assert responses[status]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
    files = schema["paths"]["/api/v1/projects/{name}/experiments/{experiment}/files/{filename}"]["get"]["responses"]
    assert "text/html" in files["200"]["content"] and "404" in files
    assert {"RunSummary", "Item", "Difference", "Experiment"} <= set(schema["components"]["schemas"])


def test_real_runs_record_grad_cam(trained):
    home, a, b = trained
    for run in (a, b):
        folder = home / "shapes" / "runs" / run
        metrics = json.loads((folder / "metrics.json").read_text())
        record = metrics["explanations"]
        assert record["method"] == "grad-cam" and metrics["timings"]["gradcam_s"] >= 0
        report = (folder / "report.html").read_text()
        assert "Where the float model looked (Grad-CAM)" in report
        if metrics["misclassified"]:
            assert record["skipped"] is None and record["explained"] == min(12, len(metrics["misclassified"]))
            assert report.count('alt="Grad-CAM of ') == record["explained"]
        else:
            assert record["skipped"] == "no misclassified test image"


def _experiment(root: Path, name: str, kind: str = "compare") -> Path:
    folder = root / "experiments" / name
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"kind": kind, "created": "2026-01-01T00:00:00+00:00",
                                                     "data": "../data"}))
    (folder / "index.html").write_text("<!doctype html><h1>backbones</h1><img src='plot.svg'>")
    (folder / "plot.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>")
    (folder / "table.md").write_text("| a |\n")
    return folder


def test_experiments_are_listed_and_served_from_their_folder_only(tmp_path):
    home = tmp_path / "projects"
    api = Api(create_app(WebConfig(home=home)))
    assert api.post(P, json={"name": "exp", "task": "image"}).status_code == 201
    root = home / "exp"
    good = _experiment(root, "backbones")
    _experiment(root, "sizes", kind="curve")
    _experiment(root, "odd", kind="something-else")  # not a compare/curve result: not listed, not served
    (root / "experiments" / "empty").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "results.json").write_text(json.dumps({"kind": "compare"}))
    (outside / "secret.json").write_text("{}")
    os.symlink(outside, root / "experiments" / "linked")
    os.symlink(outside / "secret.json", good / "linked.json")
    (good / ".hidden.json").write_text("{}")
    (good / "script.py").write_text("print()")
    (root / "project-notes.md").write_text("not an experiment file")
    # a run that failed shows its settings and error, no results
    run = root / "runs" / "20260101-000000-abcd"
    run.mkdir(parents=True)
    (run / "request.json").write_text(json.dumps({"options": {"epochs": 5}}))
    (run / "status.json").write_text(json.dumps({"state": "failed", "error": "no data"}))

    h = api.get(f"{P}/exp/history").json()
    assert [(x["name"], x["kind"]) for x in h["experiments"]] == [("backbones", "compare"), ("sizes", "curve")]
    first = h["experiments"][0]
    assert first["files"] == ["index.html", "plot.svg", "results.json", "table.md"]
    assert first["index"] == first["url"] + "index.html"
    (failed,) = h["runs"]
    assert failed["state"] == "failed" and failed["error"] == "no data" and failed["results"] == []
    assert _items(failed)["epochs"]["value"] == 5 and failed["report"] is None

    page = api.get(first["index"])
    assert page.status_code == 200 and "<h1>backbones</h1>" in page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "sandbox" in page.headers["content-security-policy"] and page.headers["x-content-type-options"] == "nosniff"
    svg = api.get(first["url"] + "plot.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert api.get(first["url"] + "table.md").headers["content-type"].startswith("text/markdown")

    base = f"{P}/exp/experiments"
    for bad in ("linked.json", ".hidden.json", "script.py", "nope.html", "..%2F..%2Fproject.json",
                "..%2Fodd%2Fresults.json", "%2Fetc%2Fpasswd"):
        assert_error(api.get(f"{base}/backbones/files/{bad}"), 404)
    assert_error(api.get(f"{base}/linked/files/secret.json"), 404, "not_found")
    assert_error(api.get(f"{base}/odd/files/index.html"), 404, "not_found")
    assert_error(api.get(f"{base}/empty/files/index.html"), 404, "not_found")
    assert_error(api.get(f"{base}/missing/files/index.html"), 404, "not_found")
    assert_error(api.get(f"{base}/..%2Fruns/files/request.json"), 404)
    assert_error(api.get(f"{base}/.hidden/files/index.html"), 400, "invalid_name")  # the one name validator (safe_name)
    assert_error(api.get(f"{P}/nope/experiments/backbones/files/index.html"), 404, "not_found")
