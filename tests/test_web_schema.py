"""Schemathesis against the served OpenAPI schema, in-process (ASGI): every documented operation of
`serve` (an empty project home and one with projects) and of `serve --model`, with schemathesis'
default checks - no 5xx, every status and body as documented (the one error shape), schema-valid
requests accepted, schema-invalid ones refused, undeclared methods answered 405 with Allow.

Bounded: a fixed number of examples per operation, derandomized, no shrinking."""

from __future__ import annotations

import collections
import os
import re
import zlib

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402
from web_helpers import Api  # noqa: E402
from web_models import IMAGE_CLASSES, png, trained_model, wav  # noqa: E402

from edgemaker.web.app import WebConfig, create_app  # noqa: E402

if not hasattr(pytest.Item, "_nodeid"):  # schemathesis' lazy fixtures rename the node; pytest 9 keeps it in `_id`
    pytest.Item._nodeid = property(lambda self: self.nodeid, lambda self, value: None)

EXAMPLES = int(os.environ.get("EDGEMAKER_FUZZ_EXAMPLES", "12"))  # per operation; raise it for a longer hunt
BASE = "http://127.0.0.1"  # the guard serves loopback names only
CASES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

# Real media for the upload fields (schemathesis' own binary is a 1x1 PNG: schema-valid, but no
# image a classifier reads). Registered by content type, as the schema's multipart encoding names them.
schemathesis.openapi.media_type("image/png", st.sampled_from([png(k, s) for k in IMAGE_CLASSES for s in (1, 2)]))
schemathesis.openapi.media_type("image/jpeg", st.sampled_from([png("blobs", 3, fmt="JPEG")]))
schemathesis.openapi.media_type("audio/x-wav", st.sampled_from([wav(440.0, 1), wav(1500.0, 2, seconds=0.5)]),
                                aliases=("audio/wav",))


def _config() -> SchemathesisConfig:
    # An upload is schema-valid whatever its bytes or kind, but a sound sent to an image project is
    # 415 (Unsupported Media Type): the schema cannot say which project reads which kind.
    return SchemathesisConfig.from_dict({"operations": [{
        "include-name": "POST /api/v1/projects/{name}/classes/{label}/samples",
        "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "409", "415"]}}}]})


def _schema(app):
    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", app, config=_config(), headers={"host": "127.0.0.1"})


@pytest.fixture(scope="module")
def empty_home_schema(tmp_path_factory):
    return _schema(create_app(WebConfig(home=tmp_path_factory.mktemp("empty") / "projects")))


@pytest.fixture(scope="module")
def projects_schema(tmp_path_factory):
    """Two projects (image, audio); each has one class with samples and one without, so a training
    request is answered (409 not_enough_data) without starting a run."""
    home = tmp_path_factory.mktemp("home") / "projects"
    app = create_app(WebConfig(home=home))
    api = Api(app)
    for name, task, files in (("pets", "image", [("a.png", png("stripes", 5)), ("b.png", png("checks", 6))]),
                              ("tones", "audio", [("a.wav", wav(300.0, 5)), ("b.wav", wav(900.0, 6))])):
        assert api.post("/api/v1/projects", json={"name": name, "task": task}).status_code == 201
        for label in ("cat", "empty"):
            assert api.post(f"/api/v1/projects/{name}/classes", json={"name": label}).status_code == 201
        r = api.post(f"/api/v1/projects/{name}/classes/cat/samples", files=[("files", f) for f in files])
        assert r.status_code == 201, r.text
    return _schema(app)


@pytest.fixture(scope="module")
def model_schema():
    return _schema(create_app(WebConfig(model=trained_model("image"))))


@pytest.fixture(scope="module", autouse=True)
def _count_cases():
    """Prints (pytest -s) how many operations and cases each server got: the figure docs/benchmarks.md quotes."""
    yield
    for kind, ops in CASES.items():
        probes = ops.pop("(undeclared-method probes)", 0)
        total = sum(ops.values())
        print(f"\nschemathesis {kind}: {len(ops)} operations x {total / max(len(ops), 1):.1f} cases = {total}, "
              f"+ {probes} undeclared-method probes ({', '.join(f'{k}: {v}' for k, v in sorted(ops.items()))})")


def _known(case) -> None:
    """Point about two cases in three at the projects that exist (deterministically), so the
    success paths are fuzzed too, not only 404s; schemathesis re-checks whether a case stays negative."""
    params = case.path_parameters or {}
    pick = zlib.crc32(repr(sorted(params.items())).encode()) % 3
    if "name" in params and pick:
        params["name"] = ("pets", "tones")[pick - 1]
        if "label" in params:
            params["label"] = "cat"
        if "filename" in params and "runs" not in case.path:
            params["filename"] = "a.png" if pick == 1 else "a.wav"


def _run(case, kind: str) -> None:
    probe = case.method.upper() != case.operation.method.upper()  # an undeclared method (expects 405 + Allow)
    CASES[kind]["(undeclared-method probes)" if probe else case.operation.label] += 1
    case.call_and_validate(base_url=BASE)


fuzz = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
                suppress_health_check=list(HealthCheck))

empty_home = schemathesis.pytest.from_fixture("empty_home_schema")
projects = schemathesis.pytest.from_fixture("projects_schema")
served_model = schemathesis.pytest.from_fixture("model_schema")


@empty_home.parametrize()
@fuzz
def test_serve_with_an_empty_home_keeps_its_schema(case):
    _run(case, "empty")


@projects.parametrize()
@fuzz
def test_serve_with_projects_keeps_its_schema(case):
    _known(case)
    _run(case, "projects")


@served_model.parametrize()
@fuzz
def test_serve_model_keeps_its_schema(case):
    _run(case, "model")


def test_schema_declares_errors_names_and_methods(empty_home_schema):
    """The promises the fuzzing relies on, stated once: the same error shape everywhere, the name
    rules on path parameters, 405 with every allowed method, and no server folder in a message."""
    app = empty_home_schema.app
    api = Api(app)
    spec = api.get("/api/v1/openapi.json").json()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            for code, response in op["responses"].items():
                if code[0] in "45":
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ErrorResponse"}, (method, path, code)
            if "{name}" in path:
                assert "404" in op["responses"] and "400" in op["responses"]
                assert any(p["name"] == "name" and "pattern" in p["schema"] for p in op["parameters"])
    r = api.request("PUT", "/api/v1/projects")
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) >= {"GET", "POST"}
    r = api.get("/api/v1/projects/nope")
    assert r.status_code == 404 and r.json()["error"]["message"] == "project 'nope' not found"


HOSTILE_CASES: collections.Counter = collections.Counter()


@settings(max_examples=max(EXAMPLES, 12) * 5, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(case=st.data())
def test_hostile_names_in_every_named_path_are_refused_in_the_error_shape(projects_schema, case):
    """Every documented operation whose path names a project or class, with a hostile name there
    (tests/hostile_names.py; a lone surrogate arrives percent-encoded as the UTF-8 of its code point):
    a 4xx in the one error shape, never a 5xx."""
    from urllib.parse import quote

    from hostile_names import hostile_name

    app = projects_schema.app
    api = Api(app)
    spec = api.get("/api/v1/openapi.json").json()
    routes = sorted((path, method) for path, item in spec["paths"].items() for method in item
                    if "{name}" in path or "{label}" in path)
    path, method = case.draw(st.sampled_from(routes))
    kind, name = case.draw(hostile_name())
    HOSTILE_CASES[kind] += 1
    encoded = quote(name.encode("utf-8", "surrogatepass"), safe="")
    slot = case.draw(st.sampled_from([s for s in ("{name}", "{label}") if s in path]))
    url = path.replace(slot, encoded).replace("{name}", "pets").replace("{label}", "cat")
    url = re.sub(r"\{run_id\}", "20260101-000000-abcd", url)
    url = re.sub(r"\{[a-z_]+\}", "a.png", url)
    r = api.request(method.upper(), url, json={"name": "x"} if method in ("post", "patch") else None)
    assert 400 <= r.status_code < 500, (method, url, r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"status", "code", "message"}, body


def test_report_hostile_name_counts():
    """Not a check: how many hostile names of each kind the property above sent (run with -s)."""
    print(f"\nhostile names in paths: {dict(HOSTILE_CASES)} ({sum(HOSTILE_CASES.values())} cases)")
