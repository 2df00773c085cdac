"""Data folders by fsspec URL (data/remote.py): a memory:// copy of a generated folder scans,
validates, splits and trains exactly like the local folder; bad URLs give one-line errors.

memory:// lives in one process, so the runs here are in-process (CliRunner, cli.main). The Ray run
uses fsspec's `local://` URL instead: the same URL code path (listing and reads through fsspec) but
visible to Ray's worker processes.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path, PurePosixPath

import fsspec
import pytest
from click.testing import CliRunner
from conftest import make_image_folder

from edgemaker.cli import cli, main
from edgemaker.data.folders import scan_folder
from edgemaker.data.remote import RemotePath
from edgemaker.data.splits import SplitOptions, make_splits
from edgemaker.data.validate import validate_folder

SRC = str(Path(__file__).resolve().parents[1] / "src")
TRAIN = ["--input-size", "96", "--augment-views", "1", "--formats", "onnx-fp32", "--threads", "1", "--json"]  # --json last


def to_memory(local: Path, url: str) -> str:
    """Copy a local folder into fsspec's memory:// store (one per process) at `url`."""
    fs = fsspec.filesystem("memory")
    inner = fs._strip_protocol(url)
    if fs.exists(inner):
        fs.rm(inner, recursive=True)
    fs.put(str(local), inner, recursive=True)
    return url


def messy_folder(root: Path, presplit: bool) -> Path:
    """A generated folder with what scan_folder must skip or report: hidden files and folders, a loose
    file, an unsupported type, a nested folder, an exact duplicate, a folder beside the splits."""
    if presplit:
        for split, n in (("train", 6), ("val", 2), ("test", 2)):
            make_image_folder(root / split, per_class=n, seed=len(split))
        (root / "extra").mkdir()
        (root / "extra" / "x.png").write_bytes((root / "train" / "blobs" / "blobs_00.png").read_bytes())
        first = root / "train" / "stripes"
    else:
        make_image_folder(root, per_class=6)
        first = root / "stripes"
    (root / "notes.txt").write_text("not data")
    (first / ".DS_Store").write_bytes(b"junk")
    (first / "readme.md").write_text("not an image")
    (first / ".hidden").mkdir()
    (first / ".hidden" / "h.png").write_bytes((first / "stripes_01.png").read_bytes())
    (first / "nested").mkdir()
    (first / "nested" / "copy.png").write_bytes((first / "stripes_00.png").read_bytes())
    return root


def rel_samples(report) -> list[tuple]:
    return [(str(s.path.relative_to(report.root)), s.label, s.content, s.split) for s in report.samples]


@pytest.mark.parametrize("presplit", [False, True], ids=["class-folders", "presplit"])
def test_memory_url_scans_validates_and_splits_like_the_local_folder(tmp_path, presplit):
    local = messy_folder(tmp_path / "data", presplit)
    url = to_memory(local, f"memory://bucket/{tmp_path.name}/data/")  # a trailing slash is fine

    a, b = scan_folder(local), scan_folder(url)
    assert isinstance(b.root, RemotePath) and str(b.root) == f"memory://bucket/{tmp_path.name}/data"
    assert [(str(f.path.relative_to(a.root)), f.label, f.split) for f in a.files] == \
           [(str(f.path.relative_to(b.root)), f.label, f.split) for f in b.files]
    assert [(str(p.relative_to(a.root)), r) for p, r in a.ignored] == \
           [(str(p.relative_to(b.root)), r) for p, r in b.ignored]
    assert len(b.ignored) == 2 and a.labels == b.labels and a.presplit == b.presplit == presplit

    ra, rb = validate_folder(local), validate_folder(url)
    assert rel_samples(ra) == rel_samples(rb) and len(rb.samples) > 10
    assert all(isinstance(s.path, RemotePath) and str(s.path).startswith(url.rstrip("/")) for s in rb.samples)
    da, db = ra.to_dict(), rb.to_dict()
    assert db.pop("root") == str(rb.root) and {**da, "root": None} == {**db, "root": None}
    assert db["duplicates"] == [{"dropped": f"{'train/' if presplit else ''}stripes/stripes_00.png",  # sorted first:
                                 "kept": f"{'train/' if presplit else ''}stripes/nested/copy.png"}]  # kept
    sa, sb = make_splits(ra, SplitOptions(seed=3)), make_splits(rb, SplitOptions(seed=3))
    for name, part in sa.items():
        assert [(str(s.path.relative_to(ra.root)), s.content) for s in part] == \
               [(str(s.path.relative_to(rb.root)), s.content) for s in dict(sb.items())[name]]


def test_a_url_folder_is_listed_once_not_per_file(tmp_path, monkeypatch):
    from fsspec.implementations.memory import MemoryFileSystem

    url = to_memory(make_image_folder(tmp_path / "data", per_class=5), "memory://bucket/once")
    calls: dict[str, int] = {}
    for name in ("find", "info", "ls", "cat_file", "open"):
        original = getattr(MemoryFileSystem, name)

        def counted(self, *a, _name=name, _original=original, **k):
            calls[_name] = calls.get(_name, 0) + 1
            return _original(self, *a, **k)

        monkeypatch.setattr(MemoryFileSystem, name, counted)
    assert len(scan_folder(url).files) == 15
    assert calls.get("find") == 1 and calls.get("info", 0) <= 3 and "cat_file" not in calls, calls


def test_remote_path_keeps_the_url():
    p = RemotePath("s3://bucket/my data/cat/001.JPG")
    assert (p.name, p.suffix, p.stem) == ("001.JPG", ".JPG", "001")
    assert str(p.parent) == "s3://bucket/my data/cat" and p.parent / "001.JPG" == p
    assert p.relative_to(RemotePath("s3://bucket/my data")) == PurePosixPath("cat/001.JPG")
    with pytest.raises(ValueError):
        p.relative_to(RemotePath("gs://bucket/my data"))
    assert pickle.loads(pickle.dumps(p)) == p and len({p, RemotePath(str(p))}) == 1
    assert str(RemotePath("memory:///abs/x")) == "memory:///abs/x"


def test_a_sound_in_a_store_streams_like_the_local_file(tmp_path):
    """Exported-model inputs and report figures open clips by path: a URL path gives the same samples."""
    import numpy as np
    import soundfile as sf

    from edgemaker.data.audio import stream_mono

    sf.write(tmp_path / "a.wav", np.sin(np.linspace(0, 900, 22050)).astype(np.float32) * 0.5, 22050)
    fsspec.filesystem("memory").pipe("/bucket/sounds/a.wav", (tmp_path / "a.wav").read_bytes())
    local = np.concatenate(list(stream_mono(tmp_path / "a.wav", 16000)))
    remote = np.concatenate(list(stream_mono(RemotePath("memory://bucket/sounds/a.wav"), 16000)))
    assert len(local) == 16000 and np.array_equal(local, remote)


def embedding_rows() -> int:
    cache = Path(os.environ["EDGEMAKER_CACHE_DIR"]) / "features.sqlite"
    with sqlite3.connect(cache) as db:
        return db.execute("SELECT count(*) FROM embeddings").fetchone()[0]


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("remote")
    data = make_image_folder(base / "data", per_class=8)
    result = CliRunner().invoke(cli, ["train", str(data), "--out", str(base / "local"), *TRAIN], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return data, base, json.loads(result.stdout)


def same_run(out: Path, metrics: dict, ref_out: Path, ref: dict) -> None:
    split, want = json.loads((out / "split.json").read_text()), json.loads((ref_out / "split.json").read_text())
    assert split["files"] == want["files"] and split["how"] == want["how"]  # relative paths, labels, hashes
    assert metrics["test"]["accuracy"] == ref["test"]["accuracy"]
    assert metrics["test"]["confusion_matrix"] == ref["test"]["confusion_matrix"]
    assert [e["test_accuracy"] for e in metrics["exports"]] == [e["test_accuracy"] for e in ref["exports"]]


def test_train_evaluate_validate_on_a_memory_url_match_the_local_folder(local_run):
    data, base, ref = local_run
    url = to_memory(data, "memory://bucket/photos")
    rows = embedding_rows()
    out = base / "memory"
    result = CliRunner().invoke(cli, ["train", url, "--out", str(out), *TRAIN], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    same_run(out, metrics, base / "local", ref)
    assert embedding_rows() == rows  # the same contents: every embedding came from the local run's cache
    assert json.loads((out / "split.json").read_text())["root"] == url
    assert url in (out / "report.html").read_text()

    model = str(out / "model_fp32.onnx")
    local_eval = CliRunner().invoke(cli, ["evaluate", model, str(data), "--json"], catch_exceptions=False)
    url_eval = CliRunner().invoke(cli, ["evaluate", model, url, "--json"], catch_exceptions=False)
    assert url_eval.exit_code == 0, url_eval.output
    a, b = json.loads(local_eval.stdout), json.loads(url_eval.stdout)
    assert b["folder"] == url and b["accuracy"] == a["accuracy"] and b["confusion_matrix"] == a["confusion_matrix"]
    checked = CliRunner().invoke(cli, ["validate", url + "/", "--json"], catch_exceptions=False)
    assert checked.exit_code == 0 and json.loads(checked.stdout)["classes"] == {"blobs": 8, "checks": 8, "stripes": 8}
    inspected = [json.loads(CliRunner().invoke(cli, ["data", "inspect", src, "--json"], catch_exceptions=False).stdout)
                 for src in (str(data), url)]
    assert inspected[1].pop("root") == url and {**inspected[0], "root": None} == {**inspected[1], "root": None}

    files = ["stripes/stripes_00.png", "blobs/blobs_01.png"]
    predicted = [json.loads(CliRunner().invoke(cli, ["predict", model, *(f"{root}/{f}" for f in files), "--json"],
                                               catch_exceptions=False).stdout)["predictions"] for root in (data, url)]
    assert [p["file"] for p in predicted[1]] == [f"{url}/{f}" for f in files]
    assert [p["top"] for p in predicted[1]] == [p["top"] for p in predicted[0]]
    missing = CliRunner().invoke(cli, ["predict", model, f"{url}/blobs/gone.png", f"{url}/{files[0]}"])
    assert missing.exit_code == 1 and missing.stderr.count("error: ") == 1, missing.output
    assert f"{url}/blobs/gone.png: file not found; check the URL" in missing.stderr and "Traceback" not in missing.output
    assert missing.stdout.startswith(f"{url}/{files[0]}: ")


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["edgemaker", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    return code, capsys.readouterr().err


def assert_error(code: int, err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_bad_urls_give_one_line_errors(monkeypatch, capsys, tmp_path, image_folder):
    out = str(tmp_path / "out")
    assert_error(*run_main(monkeypatch, capsys, "train", "s3://no-bucket/data", "--out", out), "s3://", "pip install s3fs")
    assert_error(*run_main(monkeypatch, capsys, "validate", "gs://no-bucket/data"), "pip install gcsfs")
    assert_error(*run_main(monkeypatch, capsys, "train", "nosuchfs://x/data", "--out", out), "nosuchfs://")
    assert_error(*run_main(monkeypatch, capsys, "train", "memory://nowhere/data", "--out", out),
                 "memory://nowhere/data: folder not found")
    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/afile.png", (image_folder / "blobs" / "blobs_00.png").read_bytes())
    assert_error(*run_main(monkeypatch, capsys, "train", "memory://bucket/afile.png", "--out", out),
                 "memory://bucket/afile.png: is a file")
    fs.mkdir("/bucket/empty")
    assert_error(*run_main(monkeypatch, capsys, "train", "memory://bucket/empty", "--out", out),
                 "memory://bucket/empty: no usable images")
    to_memory(make_image_folder(tmp_path / "one", classes=("cat",), per_class=3), "memory://bucket/one")
    assert_error(*run_main(monkeypatch, capsys, "train", "memory://bucket/one", "--out", out),
                 "memory://bucket/one: found only one class")
    assert not Path(out).exists()


def test_ray_engine_reads_an_fsspec_url(local_run, tmp_path):
    """`--engine ray` on a local Ray: the driver lists the `local://` URL through fsspec, the workers
    (other processes) read the samples by URL; the same split and accuracy as the local engine."""
    pytest.importorskip("ray.data", reason="the ray extra is not installed (pip install 'edgemaker[ray]')")
    data, base, ref = local_run
    cache, out = tmp_path / "cache", tmp_path / "out"
    shutil.copytree(Path(os.environ["EDGEMAKER_CACHE_DIR"]) / "backbones", cache / "backbones")  # not exported again
    env = {**os.environ, "PYTHONPATH": SRC, "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.run([sys.executable, "-m", "edgemaker", "train", f"local://{data}", "--out", str(out),
                           "--cache-dir", str(cache), "--engine", "ray", "--ray-actors", "1", *TRAIN[:-1]],
                          env=env, capture_output=True, text=True, timeout=400, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    same_run(out, json.loads((out / "metrics.json").read_text()), base / "local", ref)  # no --json: the log shows
    assert "0 found in the cache" in proc.stderr and "embedded by 1 Ray actors" in proc.stderr, proc.stderr[-2000:]
