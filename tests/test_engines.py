"""Engine choice without Ray: the local engine is the default path, a missing Ray is one line, and
file:// URLs name local folders (Ray itself: tests/test_ray_engine.py)."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from edgemaker.cli import cli
from edgemaker.data.sources import local_path, read_bytes
from edgemaker.data.validate import validate_folder
from edgemaker.errors import DataError, EdgemakerError
from edgemaker.features.engines import LocalEngine, engine_for
from edgemaker.tasks.options import EngineOptions


def test_missing_ray_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    monkeypatch.setitem(sys.modules, "ray.data", None)
    from edgemaker.features.ray_engine import import_ray

    with pytest.raises(EdgemakerError, match=r"pip install 'edgemaker\[ray\]'"):
        import_ray()


def test_cli_engine_ray_without_ray_is_one_line(monkeypatch, image_folder, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setattr("edgemaker.features.engines._RAY_ENGINES", {})
    res = CliRunner().invoke(cli, ["validate", str(image_folder), "--engine", "ray"])
    assert isinstance(res.exception, EdgemakerError)  # main() prints it as one `error:` line, exit 2
    assert "\n" not in str(res.exception) and "pip install 'edgemaker[ray]'" in str(res.exception)


def test_engine_options_are_checked():
    assert isinstance(engine_for(EngineOptions()), LocalEngine)
    with pytest.raises(ValueError, match="--ray-address goes with --engine ray"):
        EngineOptions("local", "10.0.0.1:6379")
    with pytest.raises(ValueError):
        EngineOptions("spark")
    res = CliRunner().invoke(cli, ["validate", ".", "--ray-actors", "2"])
    assert isinstance(res.exception, EdgemakerError) and "--ray-actors goes with --engine ray" in str(res.exception)


def test_file_url_is_the_local_folder(image_folder):
    url = image_folder.as_uri()
    assert local_path(url) == image_folder
    by_url, by_path = validate_folder(url), validate_folder(image_folder)
    assert by_url.samples == by_path.samples and by_url.root == image_folder
    assert read_bytes(by_url.samples[0].path.as_uri()) == by_url.samples[0].path.read_bytes()


def test_fsspec_urls_read_bytes_and_name_missing_packages():
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    fs.pipe("/edgemaker-test/a.bin", b"abc")
    assert read_bytes("memory://edgemaker-test/a.bin") == b"abc"
    with pytest.raises(OSError):
        read_bytes("memory://edgemaker-test/missing.bin")
    with pytest.raises(DataError, match="not a local folder"):
        local_path("memory://edgemaker-test")


def test_local_engine_verdicts_match_validate(image_folder, tmp_path):
    """The engine interface gives validate_folder the same report as its default threads."""
    (image_folder / "stripes" / "broken.png").write_bytes(b"not an image")
    (image_folder / "checks" / "empty.png").write_bytes(b"")
    default = validate_folder(image_folder)
    via_engine = validate_folder(image_folder, engine=LocalEngine())
    assert via_engine.samples == default.samples and via_engine.skipped == default.skipped
    reasons = dict((p.name, r) for p, r in default.skipped)
    assert reasons["empty.png"] == "empty file (0 bytes)" and "broken.png" in reasons


def test_an_address_nothing_answers_at_is_one_line_at_once(image_folder, tmp_path):
    """ray.init would retry an unreachable cluster for minutes; the run says so before it starts."""
    import os
    import socket
    import subprocess
    import time

    pytest.importorskip("ray.data", reason="the ray extra is not installed")
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgemaker", "train", str(image_folder), "--out", str(tmp_path / "out"),
                           "--engine", "ray", "--ray-address", f"127.0.0.1:{port}"],
                          capture_output=True, text=True, env={**os.environ}, timeout=120)
    assert time.perf_counter() - t < 60
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert lines == [f"error: --ray-address 127.0.0.1:{port}: nothing answers there (Connection refused); check "
                     "the address and that the cluster runs (`ray start --head` prints it)"], proc.stderr
    assert not (tmp_path / "out").exists()
