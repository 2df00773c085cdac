"""bench/quality.py: fold rotation keeps recordings together, the paired comparison, and one real run
of the bench on generated photos (the product's API end to end)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from conftest import make_image_folder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import quality  # noqa: E402


def esc_like(root: Path) -> Path:
    """train / val / test folders holding ESC-50 folds 1-3 / 4 / 5; two clips cut from each recording."""
    for fold, split in ((1, "train"), (2, "train"), (3, "train"), (4, "val"), (5, "test")):
        for label in ("dog", "rain"):
            (root / split / label).mkdir(parents=True, exist_ok=True)
            for rec in range(2):
                for part in "AB":
                    (root / split / label / f"{fold}-{label}{fold}{rec}-{part}-0.wav").write_bytes(b"x")
    return root


def roles(layout: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for p in layout.rglob("*.wav"):
        out.setdefault(p.relative_to(layout).parts[0], set()).add(p.name)
    return out


def test_esc_folds_rotate_and_recordings_stay_together(tmp_path):
    data = esc_like(tmp_path / "esc")
    tests = []
    for rotation, (test_fold, val_fold) in enumerate(((5, 4), (4, 3), (3, 2))):
        r = roles(quality.rotated(data, rotation, tmp_path / f"r{rotation}"))
        assert {n[0] for n in r["test"]} == {str(test_fold)} and {n[0] for n in r["val"]} == {str(val_fold)}
        assert len(r["train"]) == 3 * len(r["test"]) and not (r["train"] & r["val"]) and not (r["train"] & r["test"])
        recordings = {name: {n.split("-")[1] for n in names} for name, names in r.items()}
        assert not (recordings["train"] & recordings["test"]) and not (recordings["train"] & recordings["val"])
        tests.append(r["test"])
    assert not (tests[0] & tests[1]) and not (tests[1] & tests[2])
    assert (data / "train" / "dog" / "1-dog10-A-0.wav").is_file()  # the source is only linked to


def test_other_presplit_folders_swap_roles(tmp_path):
    data = make_image_folder(tmp_path / "d" / "train", per_class=2).parent
    make_image_folder(data / "val", per_class=1, seed=1)
    make_image_folder(data / "test", per_class=1, seed=2)
    layout = quality.rotated(data, 1, tmp_path / "r1")
    assert len(list((layout / "val").rglob("*.png"))) == 6  # the old train folder now validates
    assert len(list((layout / "test").rglob("*.png"))) == 3 and len(list((layout / "train").rglob("*.png"))) == 3


def test_compare_is_a_paired_test():
    probe = [True] * 60 + [False] * 40
    assert quality.compare(probe, probe) == "tie"
    better = [True] * 100
    assert quality.compare(better, probe) == "win" and quality.compare(probe, better) == "loss"
    one_more = [True] * 61 + [False] * 39  # one sample: no evidence either way
    assert quality.compare(one_more, probe) == "tie"


def test_the_bench_runs_the_product_and_resumes(tmp_path, monkeypatch, capsys):
    make_image_folder(tmp_path / "sets" / "shapes", per_class=12)
    out = tmp_path / "q.json"
    argv = ["quality.py", "--data-root", str(tmp_path / "sets"), "--sets", "shapes", "--splits", "0",
            "--methods", "defaults,probe", "--json", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    quality.main()
    record = json.loads(out.read_text())
    row = record["results"]["shapes"]["0"]
    assert len(row["defaults"]["correct"]) == len(row["probe"]["correct"]) == len(row["probe"]["test"]) > 0
    assert row["defaults"]["accuracy"] == round(float(np.mean(row["defaults"]["correct"])), 4)
    summary = record["summary"]["shapes"]
    assert sum(summary["defaults"]["vs_probe"].values()) == 1 and summary["probe"]["splits"] == 1
    assert "shapes" in capsys.readouterr().out
    before = out.stat().st_mtime_ns
    quality.main()  # everything asked for is there: nothing reruns, nothing is rewritten
    assert out.stat().st_mtime_ns == before
