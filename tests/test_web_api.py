"""The web app's API in-process (httpx ASGI transport): every endpoint, the one error shape, and
each security rule (host, token, same origin, sizes, content, names, traversal, symlinks)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")

from conftest import pattern_image  # noqa: E402
from web_helpers import Api, assert_error, png_bytes, wav_bytes  # noqa: E402

from edgemaker.web.app import WebConfig, create_app  # noqa: E402
from edgemaker.web.security import Limits, SecurityConfig  # noqa: E402

P = "/api/v1/projects"


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "projects"


@pytest.fixture
def api(home) -> Api:
    return Api(create_app(WebConfig(home=home)))


def images(kind: str, n: int, seed: int = 0) -> list[tuple]:
    rng = np.random.default_rng(seed)
    return [("files", (f"{kind}_{i}.png", png_bytes(pattern_image(kind, rng)), "image/png")) for i in range(n)]


def image_project(api: Api, name: str = "pats", per_class: int = 10) -> None:
    assert api.post(P, json={"name": name, "task": "image"}).status_code == 201
    for kind in ("stripes", "checks", "blobs"):
        assert api.post(f"{P}/{name}/classes", json={"name": kind}).status_code == 201
        r = api.post(f"{P}/{name}/classes/{kind}/samples", files=images(kind, per_class, seed=len(kind)))
        assert r.status_code == 201 and len(r.json()["added"]) == per_class, r.text


def test_openapi_schema_lists_the_routes(api):
    schema = api.get("/api/v1/openapi.json").json()
    paths = set(schema["paths"])
    for path in ("/api/v1/info", "/api/v1/options", "/api/v1/projects", "/api/v1/projects/{name}/classes",
                 "/api/v1/projects/{name}/classes/{label}/samples", "/api/v1/projects/{name}/train",
                 "/api/v1/projects/{name}/runs/{run_id}/events", "/api/v1/predict"):
        assert path in paths
    page = api.get("/")
    assert page.status_code == 200 and "<script type=\"module\" src=\"/static/app.js\">" in page.text
    assert api.get("/static/app.js").status_code == 200


def test_info_and_options(api):
    info = api.get("/api/v1/info").json()
    assert info["mode"] == "projects" and info["limits"]["max_files"] > 0
    image = api.get("/api/v1/options?task=image").json()
    assert {b["name"] for b in image["backbones"]} >= {"efficientnet_lite0"}
    assert "onnx-int8" in image["formats"] and "onnx-int8-nofrontend" not in image["formats"]
    assert image["defaults"]["epochs"] >= 1 and set(image["default_formats"]) <= set(image["formats"])
    audio = api.get("/api/v1/options?task=audio").json()
    assert all(b["name"] != "efficientnet_lite0" for b in audio["backbones"]) and "onnx-int8-nofrontend" in audio["formats"]
    assert_error(api.get("/api/v1/options?task=video"), 400, "invalid_task")


def test_projects_classes_and_samples(api, home):
    assert api.get(P).json() == {"projects": []}
    r = api.post(P, json={"name": "Fruit ✓", "task": "image"})
    assert r.status_code == 201 and r.json()["task"] == "image"
    assert (home / "Fruit ✓" / "project.json").is_file() and (home / "Fruit ✓" / "data").is_dir()
    assert_error(api.post(P, json={"name": "Fruit ✓", "task": "image"}), 409, "exists")
    assert_error(api.post(P, json={"name": "x", "task": "video"}), 400, "invalid_task")
    assert_error(api.post(P, json={"task": "image"}), 422, "invalid_request")
    assert [p["name"] for p in api.get(P).json()["projects"]] == ["Fruit ✓"]
    assert_error(api.get(f"{P}/nope"), 404, "not_found")

    base = f"{P}/Fruit%20%E2%9C%93"
    assert api.post(f"{base}/classes", json={"name": "apple"}).status_code == 201
    assert api.post(f"{base}/classes", json={"name": "pear"}).status_code == 201
    assert_error(api.post(f"{base}/classes", json={"name": "apple"}), 409, "exists")
    for bad in ("../escape", "a/b", "a\\b", ".hidden", "", "x" * 65, "train", "Val", "nul\x00"):
        assert_error(api.post(f"{base}/classes", json={"name": bad}), 400, "invalid_name")
    assert not (home / "escape").exists()

    good = images("stripes", 2)
    r = api.post(f"{base}/classes/apple/samples", files=good + [
        ("files", ("notes.jpg", b"this is not an image", "image/jpeg")),
        ("files", ("virus.exe", png_bytes(pattern_image("blobs", np.random.default_rng(1))), "application/octet-stream")),
        ("files", ("../../../evil.png", png_bytes(pattern_image("blobs", np.random.default_rng(2))), "image/png")),
    ])
    assert r.status_code == 201, r.text
    body = r.json()
    assert len(body["added"]) == 3 and "evil.png" in body["added"]  # the path part is dropped, the name kept
    reasons = {x["file"]: x for x in body["rejected"]}
    assert reasons["notes.jpg"]["code"] == "bad_content" and reasons["virus.exe"]["code"] == "unsupported_type"
    assert not (home / "evil.png").exists() and (home / "Fruit ✓" / "data" / "apple" / "evil.png").is_file()
    # the same name twice gets a fresh name, never overwrites
    again = api.post(f"{base}/classes/apple/samples", files=images("stripes", 1)).json()["added"][0]
    assert again != "stripes_0.png" and again.startswith("stripes_0-")
    # nothing but rejects: the error shape, with the first reason
    assert_error(api.post(f"{base}/classes/apple/samples", files=[("files", ("a.png", b"\x89PNG\r\n", "image/png"))]),
                 415, "bad_content")
    assert_error(api.post(f"{base}/classes/apple/samples", data={"x": "1"}, files=images("blobs", 1)), 400,
                 "bad_upload")  # only `files`
    assert_error(api.post(f"{base}/classes/apple/samples", data={"x": "1"}), 415, "unsupported_media_type")
    assert_error(api.post(f"{base}/classes/nope/samples", files=images("blobs", 1)), 404, "not_found")

    samples = api.get(f"{base}/classes/apple/samples").json()["samples"]
    assert len(samples) == 4
    got = api.get(f"{base}/samples/apple/{samples[0]['name']}")
    assert got.status_code == 200 and got.content == (home / "Fruit ✓/data/apple" / samples[0]["name"]).read_bytes()
    assert got.headers["x-content-type-options"] == "nosniff"
    assert api.delete(f"{base}/samples/apple/{samples[0]['name']}").status_code == 204
    assert_error(api.delete(f"{base}/samples/apple/{samples[0]['name']}"), 404, "not_found")

    assert api.patch(f"{base}/classes/pear", json={"name": "banana"}).json() == {"name": "banana"}
    assert_error(api.patch(f"{base}/classes/banana", json={"name": "apple"}), 409, "exists")
    assert_error(api.patch(f"{base}/classes/banana", json={"name": "../x"}), 400, "invalid_name")
    assert api.delete(f"{base}/classes/banana").status_code == 204
    project = api.get(base).json()
    assert project["classes"] == [{"name": "apple", "count": 3}] and project["runs"] == [] and project["latest_run"] is None
    assert_error(api.post(f"{base}/train", json={}), 409, "not_enough_data")


def test_traversal_and_symlinks_stay_inside_the_project(api, home, tmp_path):
    api.post(P, json={"name": "p", "task": "image"})
    api.post(f"{P}/p/classes", json={"name": "a"})
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes(pattern_image("blobs", np.random.default_rng(0))))
    (home / "p" / "data" / "a" / "link.png").symlink_to(secret)
    (home / "p" / "data" / "outside").symlink_to(tmp_path)
    for url in (f"{P}/p/samples/a/..%2F..%2Fproject.json", f"{P}/p/samples/..%2F..%2F..%2Fsecret.png/x",
                f"{P}/p/samples/a/%2Fetc%2Fpasswd", f"{P}/p/samples/a/link.png", f"{P}/p/samples/outside/secret.png",
                f"{P}/..%2F..%2Fsecret.png", f"{P}/p/samples/a/..", f"{P}/p/runs/..%2F..%2Fsecret.png/files/x"):
        r = api.get(url)
        assert r.status_code in (400, 404), (url, r.status_code)
        assert_error(r, r.status_code)
        assert r.content != secret.read_bytes()
    # the symlinked class and file are neither listed nor counted
    assert api.get(f"{P}/p").json()["classes"] == [{"name": "a", "count": 0}]
    assert_error(api.post(f"{P}/p/classes/outside/samples", files=images("blobs", 1)), 400, "outside_project")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["projects", "secret.png"]  # nothing written outside


def test_upload_limits():
    limits = Limits(max_body_bytes=2_000_000, max_file_bytes=60_000, max_files=3)
    api = Api(create_app(WebConfig(home=Path(os.environ["EDGEMAKER_CACHE_DIR"]) / "limits-home",
                                   security=SecurityConfig(limits=limits))))
    api.post(P, json={"name": "p", "task": "image"})
    api.post(f"{P}/p/classes", json={"name": "a"})
    url = f"{P}/p/classes/a/samples"
    big = np.random.default_rng(0).integers(0, 256, (300, 300, 3), np.uint8)
    from PIL import Image

    big_png = png_bytes(Image.fromarray(big))
    assert len(big_png) > limits.max_file_bytes
    assert_error(api.post(url, files=[("files", ("big.png", big_png, "image/png"))]), 413, "too_large")
    assert_error(api.post(url, files=images("blobs", 4)), 400, "bad_upload")  # over max_files
    assert_error(api.post(url, content=b"x" * 10, headers={"content-length": str(10**9),
                                                          "content-type": "multipart/form-data; boundary=b"}), 413)

    async def chunks():  # no length known up front: sent chunked
        yield b"--b\r\n"

    assert_error(api.post(url, content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"}), 411)
    assert api.get(f"{P}/p").json()["classes"] == [{"name": "a", "count": 0}]


def test_host_origin_and_token_rules(home):
    api = Api(create_app(WebConfig(home=home)))
    assert_error(api.get(P, headers={"host": "evil.example:8765"}), 421, "bad_host")
    assert api.get(P, headers={"host": "localhost:9999"}).status_code == 200
    assert_error(api.post(P, json={"name": "x", "task": "image"}, headers={"origin": "http://evil.example"}), 403,
                 "cross_origin")
    assert_error(api.post(P, json={"name": "x", "task": "image"}, headers={"sec-fetch-site": "cross-site"}), 403)
    assert api.post(P, json={"name": "x", "task": "image"}, headers={"origin": "http://127.0.0.1:8765",
                                                                     "sec-fetch-site": "same-origin"}).status_code == 201
    assert not (home / "evil").exists()

    exposed = Api(create_app(WebConfig(home=home, security=SecurityConfig(token="s3cret", loopback_only=False))))
    assert exposed.get(P, headers={"host": "192.168.1.5:8765"}).status_code == 401
    assert_error(exposed.get(P), 401, "unauthorized")
    assert_error(exposed.get(P, headers={"authorization": "Bearer wrong"}), 401)
    assert_error(exposed.get("/?token=wrong"), 401)
    assert exposed.get(P, headers={"authorization": "Bearer s3cret"}).status_code == 200
    assert exposed.get(P, headers={"cookie": "edgemaker_token=s3cret"}).status_code == 200
    page = exposed.get("/?token=s3cret")
    assert page.status_code == 303 and "edgemaker_token=s3cret" in page.headers["set-cookie"]
    assert "HttpOnly" in page.headers["set-cookie"] and "SameSite=Strict" in page.headers["set-cookie"]


def test_error_shape_for_framework_errors(api, home):
    assert_error(api.get("/api/v1/nothing"), 404, "not_found")
    assert_error(api.request("PUT", P), 405, "method_not_allowed")
    assert_error(api.post(P, content=b"{not json", headers={"content-type": "application/json"}), 422)
    (home / "broken").mkdir(parents=True)
    (home / "broken" / "project.json").write_text("{")
    assert_error(api.get(f"{P}/broken"), 500, "bad_project")
    assert api.get(P).json() == {"projects": []}  # a broken project is left out of the list, not fatal


def test_audio_project_checks_sound_content(api):
    api.post(P, json={"name": "snd", "task": "audio"})
    api.post(f"{P}/snd/classes", json={"name": "tone"})
    url = f"{P}/snd/classes/tone/samples"
    r = api.post(url, files=[("files", ("a.wav", wav_bytes(440), "audio/wav")), ("files", ("b.flac", b"fLaC junk", "audio/flac")),
                             ("files", ("c.png", png_bytes(pattern_image("blobs", np.random.default_rng(0))), "image/png"))])
    body = r.json()
    assert r.status_code == 201 and body["added"] == ["a.wav"]
    codes = {x["file"]: x["code"] for x in body["rejected"]}
    assert codes == {"b.flac": "bad_content", "c.png": "unsupported_type"}


def test_train_follow_predict_download_and_restart(api, home):
    from edgemaker.export.runtime import load_exported

    image_project(api)
    # what the schema refuses is a 422 naming the field; valid options that do not fit the project's task a 409
    assert_error(api.post(f"{P}/pats/train", json={"options": {"epochs": 0}}), 422, "invalid_request")
    assert_error(api.post(f"{P}/pats/train", json={"options": {"epochs": "3"}}), 422, "invalid_request")
    assert_error(api.post(f"{P}/pats/train", json={"options": {"backbone": "nope"}}), 422, "invalid_request")
    assert_error(api.post(f"{P}/pats/train", json={"options": {"backbone": "aisfx"}}), 409, "wrong_task")
    assert_error(api.post(f"{P}/pats/train", json={"options": {"colour": 1}}), 422, "invalid_request")
    assert_error(api.post(f"{P}/pats/train", json={"formats": ["onnx-int8-nofrontend"]}), 409, "wrong_task")
    assert_error(api.post(f"{P}/pats/train", json={"formats": ["zip"]}), 422, "invalid_request")
    assert_error(api.post("/api/v1/predict?project_name=pats", files={"file": ("x.png", b"x")}), 409, "not_trained")

    r = api.post(f"{P}/pats/train", json={"options": {"epochs": 40}, "formats": ["onnx-fp32", "onnx-int8"]})
    assert r.status_code == 202
    run = r.json()["run"]
    assert_error(api.post(f"{P}/pats/train", json={}), 409, "busy")  # one run at a time
    assert_error(api.patch(f"{P}/pats/classes/blobs", json={"name": "dots"}), 409, "busy")
    assert_error(api.delete(f"{P}/pats/classes/blobs"), 409, "busy")
    done = api.wait_run("pats", run)
    assert done["status"]["state"] == "done", done
    metrics = done["metrics"]
    assert metrics["classes"] == ["blobs", "checks", "stripes"] and metrics["test"]["accuracy"] >= 0.66
    assert done["request"]["options"]["epochs"] == 40
    assert {f["name"] for f in done["files"]} >= {"model_fp32.onnx", "model_int8.onnx", "labels.txt", "report.html",
                                                  "metrics.json"}
    assert not {"status.json", "events.jsonl", "worker.log"} & {f["name"] for f in done["files"]}

    # the event stream replays the whole run and ends with the final status
    stream = api.get(f"{P}/pats/runs/{run}/events")
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in stream.text.splitlines() if line.startswith("data: ")]
    kinds = {e.get("type") for e in events}
    assert {"progress", "epoch", "log"} <= kinds and events[-1]["state"] == "done"
    epochs = [e for e in events if e.get("type") == "epoch"]
    assert len(epochs) == metrics["training"]["epochs_run"] and epochs[0]["epoch"] == 1
    # resuming after an event id replays only what followed it
    ids = [int(line[4:]) for line in stream.text.splitlines() if line.startswith("id: ")]
    resumed = api.get(f"{P}/pats/runs/{run}/events", headers={"last-event-id": str(ids[-2])})
    assert sum(line.startswith("data: ") for line in resumed.text.splitlines()) == 2  # the last event + end

    model = api.get(f"{P}/pats/runs/{run}/files/model_int8.onnx")
    assert model.status_code == 200 and "attachment" in model.headers["content-disposition"]
    downloaded = home / "downloaded.onnx"
    downloaded.write_bytes(model.content)
    m = load_exported(downloaded)
    assert m.labels == metrics["classes"]
    for bad in ("status.json", "worker.log", ".train.lock", "nope.onnx"):
        assert_error(api.get(f"{P}/pats/runs/{run}/files/{bad}"), 404, "not_found")
    assert_error(api.get(f"{P}/pats/runs/{run}/files/..%2F..%2Fproject.json"), 404)
    assert_error(api.get(f"{P}/pats/runs/not-a-run"), 400, "invalid_name")
    assert_error(api.get(f"{P}/pats/runs/20000101-000000-abcd"), 404, "not_found")

    rng = np.random.default_rng(99)
    pred = api.post("/api/v1/predict?project_name=pats&top_k=2",
                    files={"file": ("q.png", png_bytes(pattern_image("stripes", rng)), "image/png")})
    assert pred.status_code == 200, pred.text
    out = pred.json()
    assert out["model"] == "model_int8.onnx" and len(out["top"]) == 2
    assert set(out["probabilities"]) == set(metrics["classes"])
    assert abs(sum(out["probabilities"].values()) - 1) < 0.01
    assert_error(api.post("/api/v1/predict?project_name=pats", files={"file": ("q.png", b"not an image")}), 415,
                 "bad_content")
    assert_error(api.post("/api/v1/predict", files={"file": ("q.png", b"x")}), 400, "no_model")
    assert_error(api.post("/api/v1/predict?project_name=pats", data={"x": "1"}, files={"file": ("q.png", b"x")}), 400,
                 "bad_upload")
    assert_error(api.post("/api/v1/predict?project_name=pats", data={"x": "1"}), 415, "unsupported_media_type")

    # a restarted server shows the last completed run
    restarted = Api(create_app(WebConfig(home=home)))
    project = restarted.get(f"{P}/pats").json()
    assert project["latest_run"] == run and project["active_run"] is None
    assert restarted.get(f"{P}/pats/runs").json()["runs"][0]["state"] == "done"

    # `serve --model`: the predict API alone, on the downloaded file
    headless = Api(create_app(WebConfig(model=downloaded)))
    info = headless.get("/api/v1/info").json()
    assert info["mode"] == "model" and info["model"]["labels"] == metrics["classes"]
    again = headless.post("/api/v1/predict", files={"file": ("q.png", png_bytes(pattern_image("stripes", rng)))}).json()
    assert set(again["probabilities"]) == set(metrics["classes"])
    assert_error(headless.get(f"{P}/pats"), 404, "no_projects")
    assert_error(headless.post(P, json={"name": "x", "task": "image"}), 404, "no_projects")


def _wait_state(api: Api, run: str, state: str, timeout: float = 120) -> dict:
    return api.wait_run("pats", run, until=(state, "done", "failed", "cancelled", "interrupted"), timeout=timeout)


def test_cancel_and_a_killed_worker_leave_the_project_usable(api, home):
    image_project(api, per_class=6)
    slow = {"options": {"epochs": 5}, "formats": ["onnx-fp32", "onnx-int8", "onnx-fp16"]}
    run = api.post(f"{P}/pats/train", json=slow).json()["run"]
    status = _wait_state(api, run, "running")["status"]
    assert status["state"] == "running", status
    assert api.post(f"{P}/pats/runs/{run}/cancel").status_code == 202
    status = api.wait_run("pats", run)["status"]
    assert status["state"] == "cancelled"
    assert_error(api.post(f"{P}/pats/runs/{run}/cancel"), 409, "not_running")
    assert api.get(f"{P}/pats/runs/{run}").json().get("files") is None  # partial files are never offered
    assert_error(api.get(f"{P}/pats/runs/{run}/files/metrics.json"), 404)

    run2 = api.post(f"{P}/pats/train", json=slow).json()["run"]
    status = _wait_state(api, run2, "running")["status"]
    os.kill(status["pid"], signal.SIGKILL)  # a crash: no chance to write anything
    deadline = time.time() + 30
    while api.get(f"{P}/pats/runs/{run2}").json()["status"]["state"] != "interrupted":
        assert time.time() < deadline, "a killed worker must read as interrupted"
        time.sleep(0.2)
    project = api.get(f"{P}/pats").json()
    assert project["active_run"] is None and project["latest_run"] is None
    run3 = api.post(f"{P}/pats/train", json={"options": {"epochs": 5}, "formats": ["onnx-fp32"]}).json()["run"]
    assert api.wait_run("pats", run3)["status"]["state"] == "done"
    assert api.get(f"{P}/pats").json()["latest_run"] == run3


def _start_serve(*args: str):
    import re
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "edgemaker", "serve", *args, "--no-browser", "--port", "0"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines = []
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        match = re.search(r"open (http://\S+)", line)
        if match:
            return proc, match.group(1), lines
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("serve did not print its URL: " + "".join(lines))


def test_serve_from_the_cli_on_a_real_socket(tmp_path):
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    proc, url, _ = _start_serve(str(tmp_path / "home"))
    try:
        assert url.startswith("http://127.0.0.1:") and "token" not in url
        with urllib.request.urlopen(url + "api/v1/info") as r:
            assert json.load(r)["mode"] == "projects"
        assert (tmp_path / "home").is_dir()
    finally:
        proc.terminate()
        proc.wait(10)

    proc, url, _ = _start_serve(str(tmp_path / "home"), "--host", "0.0.0.0")
    try:
        base, token = url.split("?token=")
        assert len(token) >= 20
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(base + "api/v1/info")
        assert denied.value.code == 401 and json.load(denied.value)["error"]["code"] == "unauthorized"
        req = urllib.request.Request(base + "api/v1/info", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        proc.wait(10)

    bad = subprocess.run([sys.executable, "-m", "edgemaker", "serve", "--model", str(tmp_path / "missing.onnx"),
                          "--no-browser"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "missing.onnx" in bad.stderr
    (tmp_path / "afile").write_text("x")
    bad = subprocess.run([sys.executable, "-m", "edgemaker", "serve", str(tmp_path / "afile"), "--no-browser"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "is a file" in bad.stderr


def test_two_tabs_at_once_do_not_lose_or_mix_data(api, home):
    """Concurrent uploads of the same file name keep every file; concurrent Train clicks start one run."""
    from concurrent.futures import ThreadPoolExecutor

    image_project(api, per_class=4)
    rng = np.random.default_rng(5)
    bodies = [png_bytes(pattern_image("blobs", rng)) for _ in range(8)]

    def send(body):
        return api.post(f"{P}/pats/classes/blobs/samples", files=[("files", ("same.png", body, "image/png"))])

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, bodies))
    assert all(r.status_code == 201 for r in results)
    names = [r.json()["added"][0] for r in results]
    assert len(set(names)) == 8
    folder = home / "pats" / "data" / "blobs"
    assert sorted((folder / n).read_bytes() for n in names) == sorted(bodies)
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp file left behind

    with ThreadPoolExecutor(4) as pool:
        starts = list(pool.map(lambda _: api.post(f"{P}/pats/train", json={"formats": ["onnx-fp32"]}), range(4)))
    assert sorted(r.status_code for r in starts) == [202, 409, 409, 409]
    run = next(r.json()["run"] for r in starts if r.status_code == 202)
    assert api.wait_run("pats", run)["status"]["state"] == "done"
