"""Data folders in fsspec stores (memory://, s3://, gs://, ...): a URL path type and one-listing scans.

Sample paths stay URLs, so a Ray worker on another machine reads the same bytes through
`sources.read_bytes`; the content hash (not the path) is the cache key, so a local copy and the URL
copy of the same files share embeddings. No new dependency: the few pathlib operations the pipeline
uses on sample paths (name, suffix, parent, `/`, relative_to, read_bytes) are enough here.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import PurePosixPath

from ..errors import DataError
from .urls import fsspec_filesystem, read_url_bytes


class RemotePath:
    """A file or folder in an fsspec store, by URL: `RemotePath("s3://bucket/data/cat/001.jpg")`.
    str() is the URL; relative_to() gives a PurePosixPath, so records read like a local run's."""

    __slots__ = ("_path", "protocol")

    def __init__(self, url: str) -> None:
        protocol, sep, rest = str(url).partition("://")
        if not sep or not protocol:
            raise ValueError(f"{url}: not a URL")
        self.protocol = protocol
        self._path = PurePosixPath(rest) if rest else PurePosixPath("/")

    def _with(self, path: PurePosixPath) -> RemotePath:
        new = object.__new__(RemotePath)
        new.protocol, new._path = self.protocol, path
        return new

    def __str__(self) -> str:
        return f"{self.protocol}://{self._path}"

    def __repr__(self) -> str:
        return f"RemotePath({str(self)!r})"

    def __reduce__(self):  # pickles as its URL (Ray, multiprocessing)
        return RemotePath, (str(self),)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RemotePath):
            return NotImplemented
        return (self.protocol, self._path) == (other.protocol, other._path)

    def __lt__(self, other: RemotePath) -> bool:
        return str(self) < str(other)

    def __hash__(self) -> int:
        return hash((self.protocol, self._path))

    def __truediv__(self, name: str) -> RemotePath:
        return self._with(self._path / name)

    @property
    def name(self) -> str:
        return self._path.name

    @property
    def suffix(self) -> str:
        return self._path.suffix

    @property
    def stem(self) -> str:
        return self._path.stem

    @property
    def parent(self) -> RemotePath:
        return self._with(self._path.parent)

    @property
    def parents(self) -> tuple[RemotePath, ...]:
        return tuple(self._with(p) for p in self._path.parents)

    def relative_to(self, other: RemotePath) -> PurePosixPath:
        """The part below `other` (ValueError when not below it, as pathlib does)."""
        if not isinstance(other, RemotePath) or other.protocol != self.protocol:
            raise ValueError(f"{self} is not in {other}")
        return self._path.relative_to(other._path)

    def as_posix(self) -> str:
        return str(self)

    def resolve(self) -> RemotePath:  # already absolute: a URL names one place
        return self

    def expanduser(self) -> RemotePath:
        return self

    def read_bytes(self) -> bytes:
        return read_url_bytes(str(self))

    def info(self) -> dict | None:
        """fsspec's info for this path, None when it does not exist."""
        fs, inner = fsspec_filesystem(str(self))
        try:
            return fs.info(inner)
        except FileNotFoundError:
            return None
        except Exception as exc:  # a store's own errors (permissions, network)
            raise DataError(f"{self}: cannot be read ({_first_line(exc)}); check the URL and your credentials") from None

    def exists(self) -> bool:
        return self.info() is not None

    def is_dir(self) -> bool:
        return (self.info() or {}).get("type") == "directory"

    def is_file(self) -> bool:
        return (self.info() or {}).get("type") == "file"

    def stat(self):
        """Only st_size, from the store's listing (reports show a clip when it is small enough)."""
        from types import SimpleNamespace

        info = self.info()
        if info is None:
            raise FileNotFoundError(str(self))
        return SimpleNamespace(st_size=int(info.get("size") or 0))


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class RemoteTree:
    """One recursive listing of a URL folder (a single `fs.find`), answering what scan_folder asks:
    the sorted subfolders and files of a folder, and every file below one in os.walk's order."""

    def __init__(self, root: RemotePath) -> None:
        fs, inner = fsspec_filesystem(str(root))
        info = root.info()
        if info is None:
            raise DataError(f"{root}: folder not found; pass a folder with one subfolder per class")
        if info.get("type") != "directory":
            raise DataError(f"{root}: is a file, not a folder; pass a folder with one subfolder per class")
        try:
            listing = fs.find(inner, withdirs=True, detail=True)
        except Exception as exc:
            raise DataError(f"{root}: cannot be listed ({_first_line(exc)}); check the URL and your credentials") from None
        self.root = root
        self._dirs: dict[PurePosixPath, set[str]] = defaultdict(set)
        self._files: dict[PurePosixPath, list[str]] = defaultdict(list)
        base = PurePosixPath(fs._strip_protocol(inner))
        for name, entry in listing.items():
            try:
                rel = PurePosixPath(fs._strip_protocol(name)).relative_to(base)
            except ValueError:
                continue
            if not rel.parts:
                continue
            for i in range(1, len(rel.parts)):  # stores without folder objects: folders from the keys
                self._dirs[PurePosixPath(*rel.parts[: i - 1])].add(rel.parts[i - 1])
            parent = rel.parent
            if entry.get("type") == "directory":
                self._dirs[parent].add(rel.name)
            else:
                self._files[parent].append(rel.name)

    def subdirs(self, folder: RemotePath) -> list[RemotePath]:
        """Non-hidden subfolders, sorted by name (as folders.py's `_class_dirs`)."""
        return [folder / d for d in sorted(self._dirs.get(folder.relative_to(self.root), ())) if not d.startswith(".")]

    def files(self, folder: RemotePath) -> list[RemotePath]:
        return [folder / f for f in sorted(self._files.get(folder.relative_to(self.root), ()))]

    def walk(self, folder: RemotePath) -> list[RemotePath]:
        """Every file below `folder`: its own files sorted, then each non-hidden subfolder in turn."""
        out = self.files(folder)
        for sub in self.subdirs(folder):
            out.extend(self.walk(sub))
        return out
