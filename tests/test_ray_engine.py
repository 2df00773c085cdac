"""The Ray engine (features/ray_engine.py) on a real two-node Ray cluster started on this machine:
the same split, embeddings and accuracy as the local engine, and a killed driver resumes.

One cluster for the module (Ray takes ~30 s to start); skipped when the `ray` extra is absent.
Drivers are `edgemaker train` subprocesses: Ray reads the cluster's token from their environment.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.data", reason="the ray extra is not installed (pip install 'edgemaker[ray]')")

from conftest import make_image_folder
from ray_cluster import SRC, TwoNodeCluster

from edgemaker.pipeline import train_run
from edgemaker.tasks.options import AugmentationOptions, ClassifierOptions

FORMATS = ("onnx-fp32",)


@pytest.fixture(scope="module")
def cluster():
    c = TwoNodeCluster(cpus_per_node=1)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("raydata") / "data", per_class=14)


@pytest.fixture(scope="module")
def local_run(data, tmp_path_factory):
    root = tmp_path_factory.mktemp("local")
    options = ClassifierOptions(cache_dir=root / "cache", threads=1, augmentation=AugmentationOptions(views=1))
    metrics = train_run(data, root / "out", options, formats=FORMATS)
    return metrics, root


def embeddings(cache: Path) -> dict:
    with sqlite3.connect(cache / "features.sqlite") as db:
        return {(c, b, v): np.frombuffer(blob, np.float32)
                for c, b, v, blob in db.execute("SELECT content, backbone, view, vector FROM embeddings")}


def assert_same_run(metrics: dict, out: Path, cache: Path, local_run) -> None:
    ref, root = local_run
    assert (out / "split.json").read_text() == (root / "out" / "split.json").read_text()
    assert metrics["test"]["accuracy"] == ref["test"]["accuracy"]
    assert metrics["test"]["confusion_matrix"] == ref["test"]["confusion_matrix"]
    got, want = embeddings(cache), embeddings(root / "cache")
    assert got.keys() == want.keys() and len(want) > 60
    assert max(float(np.abs(got[k] - want[k]).max()) for k in want) <= 1e-5


def _cli(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgemaker", "train", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _args(data: Path, out: Path, cache: Path, cluster, local_run, *extra: str) -> list[str]:
    """CLI arguments for a Ray run into a fresh feature cache (the backbone graph the local run exported
    copied in: exporting it again from PyTorch would only cost time)."""
    shutil.copytree(local_run[1] / "cache" / "backbones", cache / "backbones", dirs_exist_ok=True)
    return [str(data), "--out", str(out), "--cache-dir", str(cache), "--formats", ",".join(FORMATS),
            "--threads", "1", "--augment-views", "1", "--engine", "ray", "--ray-address", cluster.address, *extra]


def test_two_node_cluster_matches_local_and_resumes_after_kill(cluster, data, local_run, tmp_path):
    """A driver killed mid-extraction (SIGKILL), then a second run on both nodes: it resumes from
    what the first stored and ends with the local engine's split, embeddings (1e-5) and accuracy."""
    cache, out = tmp_path / "cache", tmp_path / "out"
    env = {**cluster.env, "PYTHONPATH": SRC}
    first = _cli(_args(data, out, cache, cluster, local_run, "--ray-actors", "1"), env)
    deadline = time.time() + 240
    while time.time() < deadline and first.poll() is None:
        try:
            with sqlite3.connect(f"file:{cache / 'features.sqlite'}?mode=ro", uri=True, timeout=1) as db:
                if db.execute("SELECT count(*) FROM embeddings").fetchone()[0]:
                    break
        except sqlite3.OperationalError:
            pass  # not created yet
        time.sleep(0.1)
    assert first.poll() is None, f"the run ended before it could be killed: {first.communicate()[1][-2000:]}"
    os.kill(first.pid, signal.SIGKILL)
    first.communicate()
    kept = len(embeddings(cache))
    assert 0 < kept < len(embeddings(local_run[1] / "cache"))
    assert not (out / "metrics.json").exists()

    second = _cli(_args(data, out, cache, cluster, local_run), env)  # default: one actor per node
    _, err = second.communicate(timeout=400)
    assert second.returncode == 0, err[-2000:]
    found = [int(line.rsplit(", ", 1)[1].split()[0]) for line in err.splitlines() if "found in the cache" in line]
    assert found and found[0] > 0, err[-2000:]  # the first extraction resumed from what the killed run stored
    assert "by 2 Ray actors (1 CPUs each) on 2 nodes" in err, err[-2000:]  # both nodes embedded windows
    metrics = json.loads((out / "metrics.json").read_text())
    assert_same_run(metrics, out, cache, local_run)
    assert metrics["data"] == local_run[0]["data"]  # validation ran on Ray: the same verdicts


@pytest.mark.slow
def test_caltech_dev10_on_two_nodes_matches_local(cluster, tmp_path):
    """caltech-dev10 (real photos, 10 classes) through the two-node cluster: the same split, embeddings
    within 1e-5 and the same test accuracy as the local engine (about a minute on 2 cores)."""
    from conftest import shared_data

    data = shared_data("caltech-dev10")
    options = ClassifierOptions(cache_dir=tmp_path / "local" / "cache")
    reference = train_run(data, tmp_path / "local" / "out", options, formats=FORMATS)
    local_run = (reference, tmp_path / "local")
    cache, out = tmp_path / "ray" / "cache", tmp_path / "ray" / "out"
    args = _args(data, out, cache, cluster, local_run)
    for flag in ("--threads", "--augment-views"):  # the defaults, as in the local run
        del args[args.index(flag):args.index(flag) + 2]
    run = _cli(args, {**cluster.env, "PYTHONPATH": SRC})
    _, err = run.communicate(timeout=3000)
    assert run.returncode == 0, err[-2000:]
    assert "on 2 nodes" in err
    assert_same_run(json.loads((out / "metrics.json").read_text()), out, cache, local_run)


def test_sound_clips_on_two_nodes_match_local(cluster, tmp_path):
    """Sound clips, several windows each, prepared by the actors on both nodes: the local engine's split,
    window embeddings (1e-5) and accuracy."""
    from conftest import make_tone_folder

    data = make_tone_folder(tmp_path / "tones", per_class=14)
    options = ClassifierOptions(cache_dir=tmp_path / "local" / "cache", threads=1, augmentation=AugmentationOptions(views=1))
    local_run = (train_run(data, tmp_path / "local" / "out", options, formats=FORMATS), tmp_path / "local")
    cache, out = tmp_path / "ray" / "cache", tmp_path / "ray" / "out"
    run = _cli(_args(data, out, cache, cluster, local_run), {**cluster.env, "PYTHONPATH": SRC})
    _, err = run.communicate(timeout=600)
    assert run.returncode == 0, err[-2000:]
    assert "windows embedded by 2 Ray actors (1 CPUs each) on 2 nodes" in err, err[-2000:]
    assert_same_run(json.loads((out / "metrics.json").read_text()), out, cache, local_run)
