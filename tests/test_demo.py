"""`make demo`'s data and its closing summary: the shipped examples/ are what SOURCES.json says, small
enough to ship, laid out as the demo trains them; the summary reports what a real run got wrong."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def test_examples_are_what_sources_json_lists():
    manifest = json.loads((EXAMPLES / "SOURCES.json").read_text())
    listed = {row["file"]: row for row in manifest["files"]}
    shipped = {p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*")
               if p.is_file() and p.name not in ("SOURCES.json", "README.md")}
    assert shipped == set(listed), "examples/ and SOURCES.json differ: run tools/make_demo_data.py"
    for name, row in listed.items():
        assert hashlib.sha256((EXAMPLES / name).read_bytes()).hexdigest() == row["sha256"], name
        assert row["source"].startswith(("caltech-dev10/", "esc10-dev9/")) and len(row["source_sha256"]) == 64
    assert sum((EXAMPLES / name).stat().st_size for name in listed) < 6e6  # small enough to ship


def test_examples_layout_is_the_one_the_demo_trains_on():
    from edgemaker import validate_folder

    photos = validate_folder(EXAMPLES / "photos")
    assert not photos.skipped and photos.modality == "image"
    counts = {c: sum(s.label == c for s in photos.samples) for c in ("butterfly", "starfish", "sunflower")}
    assert counts == {"butterfly": 40, "starfish": 40, "sunflower": 40}
    holdout = {p.parent.name for p in (EXAMPLES / "photos-holdout").rglob("*.jpg")}
    assert holdout == set(counts)
    train_names = {p.name + p.parent.name for p in (EXAMPLES / "photos").rglob("*.jpg")}
    assert not train_names & {p.name + p.parent.name for p in (EXAMPLES / "photos-holdout").rglob("*.jpg")}
    sounds = validate_folder(EXAMPLES / "sounds")
    assert sounds.presplit and not sounds.skipped and sounds.modality == "audio"
    for split, n in (("train", 24), ("val", 8), ("test", 8)):  # ESC folds 1-3, 4 and 5, per class
        for label in ("crying_baby", "dog", "rooster"):
            assert sum(s.split == split and s.label == label for s in sounds.samples) == n, (split, label)


def test_demo_summary_needs_a_run_folder(tmp_path):
    out = subprocess.run([sys.executable, "-m", "edgemaker.demo", str(tmp_path / "nothing")],
                         capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(ROOT / "src")})
    assert out.returncode != 0 and "metrics.json not found" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_demo_summary_reports_a_real_run(tmp_path):
    """The demo's photo run (quicker settings), then the summary: the numbers and mistakes of metrics.json."""
    from edgemaker.demo import summary_lines
    from edgemaker.pipeline import train_run
    from edgemaker.tasks.options import AugmentationOptions, ClassifierOptions, HParams

    run = tmp_path / "demo-run"
    train_run(EXAMPLES / "photos", run, ClassifierOptions(hparams=HParams(epochs=20),
                                                           augmentation=AugmentationOptions(enabled=False)),
              formats=("onnx-int8",))
    metrics = json.loads((run / "metrics.json").read_text())
    text = "\n".join(summary_lines(run))
    assert f"float model accuracy {metrics['test']['accuracy']:.3f}" in text
    assert f"test split: {metrics['test']['samples']} images" in text
    int8 = next(e for e in metrics["exports"] if e["path"] == "model_int8.onnx")
    assert re.search(rf"model_int8\.onnx +accuracy {int8['test_accuracy']:.3f}, ", text)
    assert f"wrong on the test split: {len(metrics['misclassified'])}" in text
    for wrong in metrics["misclassified"]:
        assert f"{wrong['path']}: is {wrong['label']}, predicted {wrong['predicted']}" in text
    assert str(run / "report.html") in text
