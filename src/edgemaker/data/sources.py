"""Where data files live: local (or NFS) paths, and fsspec URLs (file://, memory://, s3://, gs://, ...).

Everything that reads a sample's bytes goes through `read_bytes`, so a worker on another machine
reads the same bytes the driver would, and the content hash stays the cache key.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError
from .remote import RemotePath
from .urls import fsspec_filesystem, read_url_bytes

__all__ = ["as_path", "data_root", "fsspec_filesystem", "is_url", "local_path", "read_bytes"]


def is_url(data) -> bool:
    return isinstance(data, RemotePath) or (isinstance(data, str) and "://" in data)


def data_root(data: str | os.PathLike[str]):
    """Where a DATA argument lives: a local Path (plain path or file:// URL), or a RemotePath for
    any other fsspec URL (the filesystem's package must be installed: else a one-line error)."""
    if isinstance(data, RemotePath):
        return data
    if not is_url(data) or str(data).startswith("file://"):
        return local_path(data)
    fsspec_filesystem(str(data))  # the package is there, or say which to install
    return RemotePath(str(data))


def as_path(path):
    """A sample path as the pipeline keeps it: a RemotePath stays one (a URL), anything else is a Path."""
    return path if isinstance(path, RemotePath) else Path(path)


def local_path(data: str | os.PathLike[str]) -> Path:
    """A plain path or a file:// URL as a local Path; other URLs need `fsspec_filesystem`."""
    if not is_url(data):
        return Path(data)
    from urllib.parse import unquote, urlparse

    parsed = urlparse(str(data))
    if parsed.scheme != "file":
        raise DataError(f"{data}: not a local folder")
    return Path(unquote(parsed.path))


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bytes of one file, local path or URL; OSError when it cannot be read."""
    if is_url(path):
        path = str(path)
        if path.startswith("file://"):
            return local_path(path).read_bytes()
        return read_url_bytes(path)
    with open(path, "rb") as fh:
        return fh.read()
