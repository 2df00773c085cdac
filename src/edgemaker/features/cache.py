"""Embedding cache in one SQLite file: atomic commits, safe for concurrent runs, resumable.

Keys are (file content sha256, backbone cache id, view) so a renamed or moved file still hits,
an edited file misses, and a changed backbone or preprocessing version never reuses stale vectors.
The same file also remembers which contents were already validated as decodable images.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ..faults import point
from ..paths import cache_dir

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    content TEXT NOT NULL, backbone TEXT NOT NULL, view INTEGER NOT NULL,
    vector BLOB NOT NULL, PRIMARY KEY (content, backbone, view)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS media (
    content TEXT PRIMARY KEY, kind TEXT NOT NULL, problem TEXT, info TEXT
) WITHOUT ROWID;
"""

Key = tuple[str, str, int]  # (content sha256, backbone cache id, view)
_OPEN_TRIES = 40  # about 40 s of backing off while another process holds the file


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def connect(path: Path, schema: str, probe: str | None = None) -> sqlite3.Connection:
    """The cache database as every store in it opens it: WAL (readers never block the one writer,
    concurrent runs share it), autocommit (each batch commits in its own transaction), `schema` applied,
    then `probe` (a query) read to check the file is readable. "database is locked" while another
    process opens or writes the same file (switching it to WAL takes a lock that the busy timeout does
    not wait for) is retried, for about 40 s: it is not damage (taking it for damage once moved a
    second run's cache aside, losing the first run's rows)."""
    for attempt in range(_OPEN_TRIES):
        db = None
        try:
            db = sqlite3.connect(path, timeout=120, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(schema)
            if probe:
                db.execute(probe).fetchone()
            return db
        except sqlite3.OperationalError as exc:
            if db is not None:
                db.close()
            if not _busy(exc) or attempt == _OPEN_TRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


class FeatureCache:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_dir() / "features.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = self._open()
        except sqlite3.OperationalError:
            raise  # locked past every retry, or unopenable: not damage, so the file must not be moved aside
        except sqlite3.DatabaseError as exc:
            # A damaged cache only costs recomputation: move it aside and start afresh.
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.warning("feature cache %s is unreadable (%s); moved to %s", self.path, exc, aside)
            self.path.rename(aside)
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        return connect(self.path, _SCHEMA, probe="SELECT count(*) FROM media")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # embeddings -------------------------------------------------------------------------------
    def get_many(self, keys: Iterable[Key], dim: int) -> dict[Key, np.ndarray]:
        found: dict[Key, np.ndarray] = {}
        keys = list(keys)
        with self._lock:
            for start in range(0, len(keys), 300):
                chunk = keys[start : start + 300]
                where = " OR ".join(["(content=? AND backbone=? AND view=?)"] * len(chunk))
                params = [x for key in chunk for x in key]
                for content, backbone, view, blob in self._db.execute(
                    f"SELECT content, backbone, view, vector FROM embeddings WHERE {where}", params
                ):
                    vec = np.frombuffer(blob, dtype=np.float32)
                    if vec.size and vec.size % dim == 0:  # one row per window
                        found[(content, backbone, view)] = vec.reshape(-1, dim)
        return found

    def put_many(self, items: Mapping[Key, np.ndarray]) -> None:
        """Store a batch in one transaction: all of it lands or none of it does."""
        rows = [(*key, np.ascontiguousarray(vec, np.float32).tobytes()) for key, vec in items.items()]  # (windows, dim)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)", rows)
                point("cache-commit:embeddings")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # validated media ----------------------------------------------------------------------------
    def get_media(self, contents: Iterable[str], kind: str) -> dict[str, tuple[str | None, str | None]]:
        contents = list(contents)
        out: dict[str, tuple[str | None, str | None]] = {}
        with self._lock:
            for start in range(0, len(contents), 500):
                chunk = contents[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for content, problem, info in self._db.execute(
                    f"SELECT content, problem, info FROM media WHERE kind=? AND content IN ({marks})",
                    [kind, *chunk],
                ):
                    out[content] = (problem, info)
        return out

    def put_media(self, rows: Mapping[str, tuple[str | None, str | None]], kind: str) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO media VALUES (?, ?, ?, ?)",
                    [(c, kind, p, i) for c, (p, i) in rows.items()],
                )
                point("cache-commit:media")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
