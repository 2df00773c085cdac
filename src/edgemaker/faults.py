"""Test-only kill points, so tests/test_kill.py can SIGKILL a run at an exact step.

With `EDGEMAKER_TEST_KILL_AT=PATTERN[@N]` in the environment, the process kills itself with SIGKILL
(nothing runs after it: no finally, no atexit, exactly like `kill -9`) the Nth time (default 1st) it
reaches a point whose name matches PATTERN (fnmatch). Points: `validate` (each file hashed),
`cache-commit:embeddings` / `cache-commit:media` (inside the SQLite transaction, before COMMIT),
`epoch` (each head epoch), `export:FORMAT` (before each exported format), `write:NAME` (an atomic
write's temporary file complete, before its rename). Without the variable, point() does nothing.
"""

from __future__ import annotations

import fnmatch
import os
import signal
import threading

ENV = "EDGEMAKER_TEST_KILL_AT"
_lock = threading.Lock()
_seen = 0
_with: list[int] = []  # processes that die with this one (a forked worker's parent: the run itself)


def also_kill(pid: int) -> None:
    """A point reached in this (forked worker) process kills `pid` too, as `kill -9` of the run would."""
    _with.append(pid)


def point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    pattern, _, nth = spec.partition("@")
    if not fnmatch.fnmatchcase(name, pattern):
        return
    global _seen
    with _lock:
        _seen += 1
        if _seen >= int(nth or 1):
            for pid in _with:
                os.kill(pid, signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)
