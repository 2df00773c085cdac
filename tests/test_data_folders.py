"""Validation pass and splits: every bad-input case gives a reason; the folder is never written."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest

from conftest import make_image_folder, tree_digest
from edgemaker import SplitOptions, load_image_folder, make_splits, validate_folder
from edgemaker.errors import DataError
from edgemaker.features.cache import FeatureCache


def reasons(report) -> dict[str, str]:
    return {p.name: r for p, r in report.skipped}


def test_bad_files_are_skipped_with_reasons_and_the_folder_is_untouched(image_folder, tmp_path):
    (image_folder / "stripes" / "empty.jpg").write_bytes(b"")
    (image_folder / "stripes" / "notes.jpg").write_text("not an image")
    good = (image_folder / "checks" / "checks_00.png").read_bytes()
    (image_folder / "checks" / "truncated.png").write_bytes(good[: len(good) // 3])
    (image_folder / "blobs" / "readme.txt").write_text("hello")
    (image_folder / "loose.png").write_bytes(good)
    (image_folder / ".DS_Store").write_bytes(b"\0")
    before = tree_digest(image_folder)
    report = validate_folder(image_folder, cache=FeatureCache(tmp_path / "c.sqlite"))
    why = reasons(report)
    assert "empty" in why["empty.jpg"]
    assert "not an image" in why["notes.jpg"]
    assert "corrupt or truncated" in why["truncated.png"]
    assert "unsupported file type" in why["readme.txt"]
    assert "not inside a class folder" in why["loose.png"]
    assert ".DS_Store" not in why
    assert report.counts() == {"blobs": 10, "checks": 10, "stripes": 10}
    assert tree_digest(image_folder) == before


def test_cached_verdicts_give_the_same_report(image_folder, tmp_path):
    (image_folder / "stripes" / "bad.png").write_text("nope")
    cache = FeatureCache(tmp_path / "c.sqlite")
    first = validate_folder(image_folder, cache=cache)
    second = validate_folder(image_folder, cache=cache)
    assert [s.content for s in first.samples] == [s.content for s in second.samples]
    assert reasons(first) == reasons(second)


def test_duplicates_and_cross_class_conflicts(image_folder):
    src = image_folder / "stripes" / "stripes_00.png"
    shutil.copy(src, image_folder / "stripes" / "copy.png")  # same class: keep one
    shutil.copy(image_folder / "checks" / "checks_01.png", image_folder / "blobs" / "mislabelled.png")
    report = validate_folder(image_folder)
    why = reasons(report)
    assert "duplicate of copy.png" in why["stripes_00.png"]  # the first path in sorted order is kept
    assert why["mislabelled.png"].startswith("same image in classes blobs, checks")
    assert why["checks_01.png"].startswith("same image in classes")
    assert len(report.conflicts) == 1 and len(report.duplicates) == 1
    assert report.counts() == {"blobs": 10, "checks": 9, "stripes": 10}


def test_nested_folders_spaces_and_non_ascii_names(tmp_path):
    root = make_image_folder(tmp_path / "données", classes=("chat noir", "été", "猫"), per_class=4)
    nested = root / "été" / "sub folder" / "deeper"
    nested.mkdir(parents=True)
    shutil.copy(root / "chat noir" / "chat noir_00.png", nested / "très belle.png")
    report = validate_folder(root)
    # the copy in another class is a conflict; nested files do belong to their top-level class
    assert any("très belle.png" == p.name for p, _ in report.skipped)
    assert set(report.classes) == {"chat noir", "été", "猫"}


@pytest.mark.parametrize("setup,message", [
    (lambda root: root.mkdir(), "no usable images"),
    (lambda root: make_image_folder(root, classes=("only",), per_class=5), "only one class"),
    (lambda root: make_image_folder(root, per_class=2), "needs at least 3"),
    (lambda root: (make_image_folder(root), (root / "empty_class").mkdir()), "has no usable files"),
    # one class's folder given instead of the folder of classes: the fix names the folder above
    (lambda root: [f.rename(root / f.name) for f in list(make_image_folder(root, classes=("cat",), per_class=4).glob(
        "cat/*"))], r"its 4 files are not in class folders; pass the folder .* \(if 'data' is one class, that is "),
])
def test_hard_errors_name_the_folder_and_the_fix(tmp_path, setup, message):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(DataError, match=message) as err:
        make_splits(validate_folder(root))
    assert str(root) in str(err.value) and "\n" not in str(err.value)


def test_missing_folder_and_file_instead_of_folder(tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        validate_folder(tmp_path / "nope")
    (tmp_path / "f.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="is a file"):
        validate_folder(tmp_path / "f.jpg")


def test_split_is_stratified_seeded_and_disjoint(tmp_path):
    root = make_image_folder(tmp_path / "d", per_class=20)
    a = load_image_folder(root, SplitOptions(seed=3))
    b = load_image_folder(root, SplitOptions(seed=3))
    c = load_image_folder(root, SplitOptions(seed=4))
    assert [s.path for s in a.test] == [s.path for s in b.test]
    assert [s.path for s in a.test] != [s.path for s in c.test]
    assert a.sizes() == {"train": 48, "val": 6, "test": 6}
    assert Counter(s.label for s in a.test) == {"blobs": 2, "checks": 2, "stripes": 2}
    names = [set(s.path for s in part) for _, part in a.items()]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])


def test_presplit_folders_are_respected_and_missing_val_is_carved(tmp_path):
    root = tmp_path / "d"
    make_image_folder(root / "train", per_class=10, seed=1)
    make_image_folder(root / "test", per_class=3, seed=2)
    splits = load_image_folder(root)
    assert len(splits.test) == 9 and all(s.split == "test" for s in splits.test)
    assert all(s.split == "train" for s in splits.val) and len(splits.val) >= 3
    assert "val carved from train" in splits.how


def test_presplit_duplicate_across_splits_is_dropped_from_test(tmp_path):
    root = tmp_path / "d"
    make_image_folder(root / "train", per_class=5, seed=1)
    make_image_folder(root / "val", per_class=2, seed=2)
    make_image_folder(root / "test", per_class=2, seed=3)
    shutil.copy(root / "train" / "blobs" / "blobs_00.png", root / "test" / "blobs" / "leak.png")
    report = validate_folder(root)
    assert "would leak into evaluation" in reasons(report)["leak.png"]


def test_split_options_parse_and_validate():
    assert SplitOptions.parse("70/20/10").val == pytest.approx(0.2)
    with pytest.raises(ValueError):
        SplitOptions.parse("80/20")
    with pytest.raises(ValueError):
        SplitOptions(0.9, 0.1, 0.0)
