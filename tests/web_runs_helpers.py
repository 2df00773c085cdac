"""A project with two finished runs that differ in their settings, trained by the real worker
(shared by the runs-page API test and its browser test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import pattern_image
from web_helpers import Api, png_bytes

P = "/api/v1/projects"
# Two real runs, kept small: Lite0 head-only without augmentation, then small_cnn from scratch with it.
RUN_A = {"options": {"epochs": 30, "augment": False}, "formats": ["onnx-fp32", "onnx-int8"]}
RUN_B = {"options": {"epochs": 20, "augment": True, "backbone": "small_cnn"}, "formats": ["onnx-fp32", "onnx-int8"]}


def project_with_two_runs(home: Path, name: str = "shapes", per_class: int = 8) -> tuple[str, str]:
    """(older run id, newer run id), both `done`, in HOME/<name>."""
    from edgemaker.web.app import WebConfig, create_app

    api = Api(create_app(WebConfig(home=home)))
    assert api.post(P, json={"name": name, "task": "image"}).status_code == 201
    rng = np.random.default_rng(5)
    for kind in ("stripes", "checks", "blobs"):
        assert api.post(f"{P}/{name}/classes", json={"name": kind}).status_code == 201
        files = [("files", (f"{kind}_{i}.png", png_bytes(pattern_image(kind, rng)), "image/png")) for i in range(per_class)]
        assert api.post(f"{P}/{name}/classes/{kind}/samples", files=files).status_code == 201
    ids = []
    for request in (RUN_A, RUN_B):
        r = api.post(f"{P}/{name}/train", json=request)
        assert r.status_code == 202, r.text
        done = api.wait_run(name, r.json()["run"], timeout=900)
        assert done["status"]["state"] == "done", done["status"]
        ids.append(r.json()["run"])
    return ids[0], ids[1]


_HOMES: dict[str, tuple[Path, str, str]] = {}


def shared_two_runs(tmp_path_factory) -> tuple[Path, str, str]:
    """(home, older run, newer run), trained once per test session for every module that asks
    (the API test and the browser test only read it)."""
    if "home" not in _HOMES:
        home = tmp_path_factory.mktemp("two-runs") / "projects"
        _HOMES["home"] = (home, *project_with_two_runs(home))
    return _HOMES["home"]

