"""Write a new data folder from existing files: copies or links, visible only once complete.

The folder is built as a hidden sibling (`.NEW.tmp-xxxx`) and renamed into place at the end, so a
killed run leaves no NEW that looks finished; the source files are only ever read.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from ...errors import EdgemakerError


def check_out(source: Path, out: Path, option: str = "--out", must_be_new: bool = True) -> Path:
    """Refuse an output inside the source (it would be written) or an existing, non-empty NEW."""
    from ..sources import data_root

    src, dst = data_root(source).resolve(), Path(out).resolve()
    if dst == src or src in dst.parents:
        raise EdgemakerError(f"{option} {out}: is inside the data folder {source}, which is never written; "
                             "choose a folder outside it")
    if dst in src.parents:
        raise EdgemakerError(f"{option} {out}: contains the data folder {source}; choose a new folder beside it")
    if must_be_new and dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise EdgemakerError(f"{option} {out}: already exists and is not empty; choose a new folder or remove it")
    return dst


def _place(src: Path, dst: Path, link: bool) -> str:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not link:
        shutil.copy2(src, dst)
        return "copy"
    try:
        os.link(src, dst)
        return "hardlink"
    except OSError:  # another file system, or links not allowed: a symbolic link still saves space
        os.symlink(src.resolve(), dst)
        return "symlink"


def write_folder(out: Path, files: Iterable[tuple[Path, str]], link: bool = False,
                 extra: Callable[[Path], None] | None = None) -> dict[str, int]:
    """Place each (source file, relative destination) under `out`; `extra(tmp)` adds more files.

    Returns how many files were copied / hard-linked / symlinked.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    how: dict[str, int] = {}
    try:
        for src, rel in files:
            kind = _place(Path(src), tmp / rel, link)
            how[kind] = how.get(kind, 0) + 1
        if extra:
            extra(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        if out.is_dir():
            out.rmdir()  # empty (checked before); an entry added since then makes this fail loudly
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return how


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def unique_destinations(items: Iterable[tuple[Path, str, Path]]) -> list[tuple[Path, str]]:
    """(file, class, path inside its class folder) -> (file, relative destination) with no clashes.

    Pooling train/val/test can give two files the same name in one class: the later one gets a
    numbered name rather than overwriting the first.
    """
    seen: set[str] = set()
    out = []
    for src, label, inner in items:
        rel = Path(label) / inner
        n = 1
        while rel.as_posix().lower() in seen:
            rel = Path(label) / inner.parent / f"{inner.stem}~{n}{inner.suffix}"
            n += 1
        seen.add(rel.as_posix().lower())
        out.append((src, rel.as_posix()))
    return out
