"""fsspec URLs: the filesystem of a URL (with the package to install when it is missing) and its bytes."""

from __future__ import annotations

from ..errors import DataError


def fsspec_filesystem(url: str):
    """(filesystem, path inside it) for an fsspec URL; a one-line error naming the package to install."""
    try:
        import fsspec
    except ImportError:
        raise DataError(f"{url}: reading URLs needs fsspec; install it with `pip install fsspec`") from None
    protocol = url.split("://", 1)[0]
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        hint = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}.get(protocol)
        fix = f"install it with `pip install {hint}`" if hint else f"install the fsspec package for {protocol}://"
        raise DataError(f"{url}: no filesystem for {protocol}:// ({str(exc).splitlines()[0]}); {fix}") from None
    return fs, path


def read_url_bytes(url: str) -> bytes:
    """The bytes of the file at an fsspec URL; OSError when it cannot be read."""
    fs, inner = fsspec_filesystem(url)
    try:
        return fs.cat_file(inner)
    except OSError:
        raise
    except Exception as exc:  # a store's own errors (permissions, network) read as unreadable
        raise OSError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
