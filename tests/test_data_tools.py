"""`edgemaker data inspect|sample|split|clean` on generated folders with planted problems; the
source folder is never written and every bad request is one line."""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from conftest import make_image_folder, pattern_image, shared_data, tree_digest
from edgemaker.cli import main
from edgemaker.data.tools.clean import clean_folder
from edgemaker.data.tools.inspect import inspect_folder
from edgemaker.data.tools.sample import sample_folder
from edgemaker.data.tools.split import split_folder
from edgemaker.errors import DataError, EdgemakerError


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["edgemaker", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code: int, err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def planted(tmp_path) -> Path:
    """Three classes of 12, plus every problem inspect must find."""
    root = make_image_folder(tmp_path / "photos", per_class=12)
    good = (root / "checks" / "checks_00.png").read_bytes()
    (root / "checks" / "truncated.png").write_bytes(good[: len(good) // 3])
    (root / "stripes" / "corrupt.jpg").write_text("not an image at all")
    (root / "blobs" / "empty.png").write_bytes(b"")
    shutil.copy(root / "stripes" / "stripes_00.png", root / "stripes" / "exact copy.png")
    near = Image.open(root / "stripes" / "stripes_01.png").convert("RGB").resize((80, 80), Image.Resampling.BICUBIC)
    near.save(root / "stripes" / "resized.jpg", quality=80)  # resized and re-encoded: other bytes
    shutil.copy(root / "checks" / "checks_02.png", root / "blobs" / "mislabelled.png")
    shutil.copy(root / "checks" / "checks_03.png", root / "checks" / "checks_03 (copy).png")
    near2 = Image.open(root / "checks" / "checks_04.png").convert("RGB").resize((120, 120))
    near2.save(root / "stripes" / "looks like checks.jpg", quality=90)  # near-duplicate under another label
    rng = np.random.default_rng(7)
    (root / "rare").mkdir()
    for i in range(3):
        pattern_image("blobs", rng).save(root / "rare" / f"rare_{i}.png")
    return root


def test_inspect_reports_every_planted_image_problem(planted, tmp_path, monkeypatch, capsys):
    before = tree_digest(planted)
    result = inspect_folder(planted)
    p = result["problems"]
    reasons = {x["path"]: x["reason"] for x in p["unusable"]}
    assert "corrupt or truncated" in reasons["checks/truncated.png"]
    assert "not an image" in reasons["stripes/corrupt.jpg"]
    assert "empty" in reasons["blobs/empty.png"]
    assert len(reasons) == 3
    exact = {frozenset([x["kept"], *x["copies"]]) for x in p["exact_duplicates"]}
    assert exact == {frozenset({"stripes/stripes_00.png", "stripes/exact copy.png"}),
                     frozenset({"checks/checks_03.png", "checks/checks_03 (copy).png"})}
    assert [(x["classes"], sorted(x["paths"])) for x in p["cross_label_duplicates"]] == \
        [(["blobs", "checks"], ["blobs/mislabelled.png", "checks/checks_02.png"])]
    groups = {frozenset(f["path"] for f in g["files"]): g for g in p["near_duplicates"]}
    assert frozenset({"stripes/stripes_01.png", "stripes/resized.jpg"}) in groups
    cross = groups[frozenset({"checks/checks_04.png", "stripes/looks like checks.jpg"})]
    assert cross["cross_label"] and cross["classes"] == ["checks", "stripes"]
    assert len(groups) == 2  # no generated image is mistaken for another
    assert p["tiny_classes"] == [{"class": "rare", "count": 3}]
    assert result["balance"]["smallest"] == {"class": "rare", "count": 3}
    assert result["balance"]["largest"]["class"] == "stripes" and result["balance"]["ratio"] == pytest.approx(14 / 3, abs=0.01)
    assert result["classes"] == {"blobs": 12, "checks": 11, "rare": 3, "stripes": 14}
    assert result["facts"]["formats"] == {"PNG": 38, "JPEG": 2}

    code, out, err = run_cli(monkeypatch, capsys, "data", "inspect", str(planted), "--out", str(tmp_path / "insp"))
    assert code == 0, err
    for needle in ("unusable files: 3", "exact duplicates (kept once): 2", "same content under two labels: 1",
                   "near-duplicate groups (1 across labels, 0 across splits): 2", "tiny classes (< 10): 1",
                   "rare: 3", "ratio 4.67"):
        assert needle in out, needle
    page = (tmp_path / "insp" / "inspect.html").read_text()
    assert page.count("data:image/jpeg;base64,") >= 8 and "cannot be shown" in page
    assert "http://" not in page and "https://" not in page
    assert json.loads((tmp_path / "insp" / "inspect.json").read_text())["problems"] == json.loads(json.dumps(p))
    assert tree_digest(planted) == before


def sound(seed: int, rate: int = 16000, seconds: float = 1.5) -> np.ndarray:
    """A clip that differs from every other seed: random chirps and noise bursts, silence around."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    f0, f1 = rng.uniform(200, 3000, 2)
    x = np.sin(2 * np.pi * (f0 + (f1 - f0) * t / seconds / 2) * t) * rng.uniform(0.2, 0.5)
    env = np.zeros_like(t)
    for start in rng.uniform(0, seconds - 0.3, 4):
        env[(t > start) & (t < start + rng.uniform(0.05, 0.3))] = 1
    x = x * (0.3 + env) + rng.normal(0, 0.05, len(t)) * env
    return np.concatenate([np.zeros(rate // 4), x, np.zeros(rate // 5)]).astype(np.float32) * 0.8


def test_inspect_finds_duplicate_and_gain_changed_clips(tmp_path):
    root = tmp_path / "sounds"
    for c, label in enumerate(("door", "knock", "bell")):
        (root / label).mkdir(parents=True)
        for i in range(6):
            sf.write(root / label / f"{label}_{i}.wav", sound(100 * c + i), 16000)
    shutil.copy(root / "door" / "door_0.wav", root / "door" / "door_copy.wav")
    x, rate = sf.read(root / "knock" / "knock_1.wav")
    sf.write(root / "knock" / "knock_quiet.flac", x * 0.35, rate)  # gain -9 dB, re-encoded as FLAC
    sf.write(root / "bell" / "bell_loud_44k.wav", np.repeat(sound(201), 2)[: len(x) * 2] * 1.1, 32000)
    (root / "bell" / "broken.wav").write_bytes(b"RIFF\x00\x00")
    before = tree_digest(root)
    result = inspect_folder(root)
    p = result["problems"]
    assert [x["path"] for x in p["unusable"]] == ["bell/broken.wav"]
    assert [(x["kept"], x["copies"]) for x in p["exact_duplicates"]] == [("door/door_0.wav", ["door/door_copy.wav"])]
    groups = sorted(sorted(f["path"] for f in g["files"]) for g in p["near_duplicates"])
    assert groups == [["bell/bell_1.wav", "bell/bell_loud_44k.wav"], ["knock/knock_1.wav", "knock/knock_quiet.flac"]]
    assert result["facts"]["sample_rates"] == {"16000": 19, "32000": 1}
    assert result["facts"]["formats"]["FLAC/PCM_16"] == 1
    assert result["facts"]["duration_s"]["max"] == pytest.approx(1.95)
    assert tree_digest(root) == before


def test_sample_is_balanced_seeded_and_names_short_classes(planted, tmp_path, monkeypatch, capsys):
    before = tree_digest(planted)
    a = sample_folder(planted, tmp_path / "a", 3, seed=1)
    b = sample_folder(planted, tmp_path / "b", 3, seed=1)
    c = sample_folder(planted, tmp_path / "c", 3, seed=2)
    assert a["picked"] == b["picked"] and a["picked"] != c["picked"]
    counts = Counter(p.parent.name for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert counts == {"blobs": 3, "checks": 3, "rare": 3, "stripes": 3}
    picked = set(a["picked"])
    assert not picked & {"checks/truncated.png", "blobs/mislabelled.png", "checks/checks_02.png"}
    with pytest.raises(DataError, match=r"rare \(3\)") as exc:
        sample_folder(planted, tmp_path / "d", 4)
    assert "blobs" not in str(exc.value) and not (tmp_path / "d").exists()
    code, _, err = run_cli(monkeypatch, capsys, "data", "sample", str(planted), "--per-class", "12",
                           "--out", str(tmp_path / "e"))
    one_line_error(code, err, "2 class(es) have fewer than 12", "checks (11), rare (3)", "lower --per-class to 3")
    assert tree_digest(planted) == before
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_sample_links_instead_of_copying(planted, tmp_path):
    sample_folder(planted, tmp_path / "l", 2, link=True)
    files = [p for p in (tmp_path / "l").rglob("*") if p.is_file()]
    assert len(files) == 8 and all(p.stat().st_nlink == 2 or p.is_symlink() for p in files)


def test_split_is_stratified_and_seeded(tmp_path):
    root = make_image_folder(tmp_path / "d", per_class=20)
    before = tree_digest(root)
    one = split_folder(root, tmp_path / "s1", val=0.1, test=0.2, seed=3)
    two = split_folder(root, tmp_path / "s2", val=0.1, test=0.2, seed=3)
    other = split_folder(root, tmp_path / "s3", val=0.1, test=0.2, seed=4)
    assert one["files"] == two["files"] and one["files"] != other["files"]
    for c in ("blobs", "checks", "stripes"):
        assert [one["counts"][sp][c] for sp in ("train", "val", "test")] == [14, 2, 4]
        assert len(list((tmp_path / "s1" / "test" / c).iterdir())) == 4
    assert tree_digest(root) == before


def test_split_group_by_keeps_groups_on_one_side(tmp_path):
    root = tmp_path / "esc"
    rng = np.random.default_rng(0)
    for label in ("dog", "rain"):
        (root / label).mkdir(parents=True)
        for rec in range(10):
            for take in "ABC"[: 1 + rec % 3]:
                pattern_image("checks" if label == "dog" else "stripes", rng).save(
                    root / label / f"{rec % 5 + 1}-{len(label) * 1000 + rec}-{take}-{label}.png")
    result = split_folder(root, tmp_path / "out", val=0.2, test=0.2, seed=0, group_by=r"^(\d+-\d+)")
    side_of_group: dict[str, set[str]] = {}
    for path, side in result["files"].items():
        side_of_group.setdefault(Path(path).name.rsplit("-", 2)[0], set()).add(side)
    assert len(side_of_group) == 20 and all(len(s) == 1 for s in side_of_group.values())
    for c in ("dog", "rain"):
        assert all(result["counts"][sp][c] >= 1 for sp in ("train", "val", "test"))
        assert result["counts"]["train"][c] >= result["counts"]["test"][c]
    again = split_folder(root, tmp_path / "again", val=0.2, test=0.2, seed=0, group_by=r"^(\d+-\d+)")
    assert again["files"] == result["files"]
    # Whole match when the pattern has no group; one recording per class cannot fill three sides.
    with pytest.raises(DataError, match="cannot be on all of train/val/test"):
        split_folder(root, tmp_path / "x", group_by=r"dog|rain")
    assert not (tmp_path / "x").exists()


def test_clean_drops_corrupt_and_duplicates_and_lists_cross_label(planted, tmp_path, monkeypatch, capsys):
    before = tree_digest(planted)
    code, out, err = run_cli(monkeypatch, capsys, "data", "clean", str(planted), "--out", str(tmp_path / "clean"))
    assert code == 0, err
    assert "two labels (blobs / checks): blobs/mislabelled.png, checks/checks_02.png" in out
    clean = tmp_path / "clean"
    names = {p.relative_to(clean).as_posix() for p in clean.rglob("*") if p.is_file()}
    for gone in ("checks/truncated.png", "stripes/corrupt.jpg", "blobs/empty.png", "blobs/mislabelled.png",
                 "checks/checks_02.png"):
        assert gone not in names
    assert ("stripes/stripes_00.png" in names) != ("stripes/exact copy.png" in names)
    listed = json.loads((clean / "cross_label_duplicates.json").read_text())
    assert listed[0]["classes"] == ["blobs", "checks"] and len(listed[0]["paths"]) == 2
    again = inspect_folder(clean)
    # only the two lists beside the class folders, which training skips as "not inside a class folder"
    assert {x["path"] for x in again["problems"]["unusable"]} == {"clean.json", "cross_label_duplicates.json"}
    assert not again["problems"]["exact_duplicates"]
    assert not again["problems"]["cross_label_duplicates"]
    assert again["classes"] == {"blobs": 12, "checks": 11, "rare": 3, "stripes": 14}
    assert tree_digest(planted) == before
    with pytest.raises(EdgemakerError, match="already exists and is not empty"):
        clean_folder(planted, clean)


def test_cli_errors_are_one_line(planted, tmp_path, monkeypatch, capsys):
    cases = [
        (("data", "inspect", str(tmp_path / "nope")), ("folder not found",)),
        (("data", "inspect", str(planted), "--out", str(planted / "report")), ("inside the data folder",)),
        (("data", "split", str(planted), "--out", str(tmp_path / "s"), "--val", "0.6", "--test", "0.5"),
         ("--val 0.6 --test 0.5",)),
        (("data", "split", str(planted), "--out", str(tmp_path / "s"), "--group-by", "(["), ("not a valid regular",)),
        (("data", "split", str(planted), "--out", str(tmp_path / "s"), "--group-by", r"^zzz(\d+)"),
         ("matches no file name",)),
        (("data", "sample", str(planted), "--per-class", "0", "--out", str(tmp_path / "s")), ("positive number",)),
        (("data", "clean", str(planted), "--out", str(planted / "stripes")), ("inside the data folder",)),
    ]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("keep me")
    cases.append((("data", "clean", str(planted), "--out", str(tmp_path / "full")), ("already exists",)))
    before = tree_digest(planted)
    for args, needles in cases:
        code, _, err = run_cli(monkeypatch, capsys, *args)
        one_line_error(code, err, *needles)
    assert tree_digest(planted) == before and (tmp_path / "full" / "x.txt").read_text() == "keep me"
    assert not (tmp_path / "s").exists()


def test_inspect_real_sounds_finds_their_layout(tmp_path):
    root = shared_data("esc10-dev9")
    result = inspect_folder(root)
    assert result["layout"] == "presplit" and result["usable"] == 360
    assert all(result["per_split"]["test"][c] == 8 for c in result["classes"])
    assert result["facts"]["sample_rates"] == {"16000": 360}
    assert not result["problems"]["unusable"] and not result["problems"]["cross_label_duplicates"]


def test_a_run_that_dies_midway_leaves_no_new_folder(planted, tmp_path, monkeypatch):
    from edgemaker.data.tools import output

    real, calls = output._place, []

    def dying(src, dst, link):
        calls.append(src)
        if len(calls) == 5:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C while files were being copied
        return real(src, dst, link)

    monkeypatch.setattr(output, "_place", dying)
    with pytest.raises(KeyboardInterrupt):
        split_folder(planted, tmp_path / "new")
    assert len(calls) == 5 and not (tmp_path / "new").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["photos"]
