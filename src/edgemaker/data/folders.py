"""Read a data folder's layout: `<class>/<files>` or `{train,val,test}/<class>/<files>`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
AUDIO_EXTENSIONS = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"})
MEDIA_EXTENSIONS = IMAGE_EXTENSIONS | AUDIO_EXTENSIONS


def modality_of(path: Path) -> str:
    return "audio" if path.suffix.lower() in AUDIO_EXTENSIONS else "image"
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class FoundFile:
    path: Path
    label: str
    split: str | None  # given by the folder layout, else None


@dataclass
class ScannedFolder:
    root: Path
    presplit: bool
    files: list[FoundFile]
    labels: set[str] = field(default_factory=set)  # every class folder, even an empty one
    ignored: list[tuple[Path, str]] = field(default_factory=list)


def _walk(class_dir: Path) -> list[Path]:
    """Every regular file below `class_dir`, nested folders included, sorted; no symlinked dirs."""
    out = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(Path(dirpath) / f for f in sorted(filenames))
    return out


def _class_dirs(parent: Path) -> list[Path]:
    return sorted((p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def scan_folder(root: str | os.PathLike[str], extensions: frozenset[str] = MEDIA_EXTENSIONS) -> ScannedFolder:
    """List candidate files with their class (and split when the layout gives one). Reads no file.
    `root`: a folder, a file:// URL, or another fsspec URL (memory://, s3://, ...; data/sources.py),
    listed once (data/remote.py) and read with the same rules."""
    from .sources import data_root

    root = data_root(root)
    if not isinstance(root, Path):
        from .remote import RemoteTree

        tree = RemoteTree(root)
        return _layout(root, tree.subdirs, tree.files, tree.walk, extensions)
    if not root.exists():
        raise DataError(f"{root}: folder not found; pass a folder with one subfolder per class")
    if not root.is_dir():
        raise DataError(f"{root}: is a file, not a folder; pass a folder with one subfolder per class")
    return _layout(root, _class_dirs, lambda p: sorted(x for x in p.iterdir() if x.is_file()), _walk, extensions)


def _layout(root, subdirs, files, walk, extensions: frozenset[str]) -> ScannedFolder:
    """The layout rules over a folder tree: `subdirs(p)` sorted non-hidden subfolders, `files(p)` sorted
    files directly in p, `walk(p)` every file below p (local folders and URL listings alike)."""
    top = subdirs(root)
    split_dirs = {SPLIT_NAMES[d.name.lower()]: d for d in top if d.name.lower() in SPLIT_NAMES}
    presplit = "train" in split_dirs
    scanned = ScannedFolder(root=root, presplit=presplit, files=[])
    if presplit:
        for extra in top:
            if extra.name.lower() not in SPLIT_NAMES:
                scanned.ignored.append((extra, "folder beside train/val/test is not used"))
        groups = [(split, d) for split, d in split_dirs.items()]
    else:
        groups = [(None, root)]
    for split, parent in groups:
        for loose in files(parent):
            if not loose.name.startswith("."):
                scanned.ignored.append((loose, "not inside a class folder"))
        for class_dir in subdirs(parent):
            scanned.labels.add(class_dir.name)
            for path in walk(class_dir):
                if path.name.startswith("."):
                    continue
                if path.suffix.lower() not in extensions:
                    scanned.ignored.append((path, f"unsupported file type '{path.suffix or path.name}'"))
                    continue
                scanned.files.append(FoundFile(path=path, label=class_dir.name, split=split))
    return scanned
