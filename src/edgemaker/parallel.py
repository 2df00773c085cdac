"""A bounded, order-keeping map over a thread pool (shared by validation, extraction and export checks),
and a map over forked processes (cross-validation's head fits)."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor


def ordered_map(pool: ThreadPoolExecutor, jobs: list, fn, window: int) -> Iterator:
    """Like pool.map, but keeps at most `window` jobs in flight (bounded memory)."""
    pending: deque[Future] = deque()
    it = iter(jobs)
    for job in it:
        pending.append(pool.submit(fn, *job))
        if len(pending) >= window:
            break
    while pending:
        yield pending.popleft().result()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.submit(fn, *nxt))


def can_fork() -> bool:
    """Whether `forked_map` runs here: Linux only (macOS's system libraries are not fork-safe)."""
    import sys

    return sys.platform.startswith("linux") and hasattr(os, "fork")


def forked_map(fn, items: list, workers: int) -> list:
    """[fn(item) for item in items] on `workers` forked processes, in the items' order. For pure-numpy
    work that holds the GIL between many small calls, where threads barely overlap. Children inherit
    `fn` and `items` (copy-on-write: nothing is pickled on the way in) and take the next item's index
    from a pipe, so the load balances; each result is pickled back. A child that raises passes its
    exception on; a child that dies (killed, out of memory) fails the call with one clear error.
    No pool outlives the call, and a child whose parent is killed ends with its pipe."""
    import pickle
    import signal
    import struct
    import warnings

    from . import faults

    if not items:
        return []
    index = b"".join(struct.pack("<I", i) for i in range(len(items)))
    if len(index) > 4096:  # the index must fit a pipe's buffer before any child reads it
        raise ValueError(f"forked_map takes at most 1024 items (got {len(items)})")
    parent = os.getpid()
    tasks_r, tasks_w = os.pipe()
    os.write(tasks_w, index)
    os.close(tasks_w)
    children: list[tuple[int, int]] = []  # (pid, read end of its results)
    streams = None
    try:
        for _ in range(min(workers, len(items))):
            r, w = os.pipe()
            with warnings.catch_warnings():
                # JAX (imported by the TFLite converter) warns at every fork of a process it has started
                # threads in; the children run only `fn` (numpy here) and never touch JAX.
                warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
                try:
                    pid = os.fork()
                except OSError:
                    os.close(r)
                    os.close(w)
                    raise
            if pid == 0:  # the child: never returns
                code = 1
                try:
                    os.close(r)
                    signal.signal(signal.SIGINT, signal.SIG_DFL)
                    faults.also_kill(parent)
                    with os.fdopen(w, "wb") as out:
                        while len(raw := os.read(tasks_r, 4)) == 4:
                            i = struct.unpack("<I", raw)[0]
                            try:
                                message = pickle.dumps((i, True, fn(items[i])), protocol=5)
                            except Exception as exc:  # noqa: BLE001 - handed to the parent, which raises it
                                try:
                                    message = pickle.dumps((i, False, exc), protocol=5)
                                except Exception:  # noqa: BLE001 - an exception that cannot be pickled
                                    message = pickle.dumps((i, False, RuntimeError(f"{type(exc).__name__}: {exc}")))
                            out.write(struct.pack("<Q", len(message)) + message)
                            out.flush()
                    code = 0
                finally:
                    os._exit(code)
            os.close(w)
            children.append((pid, r))
        os.close(tasks_r)
        tasks_r = -1
        streams = _read_all([r for _, r in children])
    finally:
        if tasks_r >= 0:
            os.close(tasks_r)
        statuses = []
        for pid, r in children:
            if streams is None:  # interrupted: the children's work is not wanted
                os.kill(pid, signal.SIGKILL)
            os.close(r)
            try:
                statuses.append(os.waitpid(pid, 0)[1])
            except ChildProcessError:
                statuses.append(0)
    results: dict[int, tuple[bool, object]] = {}
    for data in streams:
        at = 0
        while at + 8 <= len(data):
            (size,) = struct.unpack_from("<Q", data, at)
            i, ok, value = pickle.loads(data[at + 8:at + 8 + size])
            results[i] = (ok, value)
            at += 8 + size
    for i in range(len(items)):
        if i in results and not results[i][0]:
            raise results[i][1]
    if len(results) < len(items):
        how = ", ".join(f"signal {os.WTERMSIG(s)}" if os.WIFSIGNALED(s) else f"exit {os.WEXITSTATUS(s)}"
                        for s in statuses if s)
        raise RuntimeError(f"a worker process died before finishing its share ({how or 'no status'})")
    return [results[i][1] for i in range(len(items))]


def _read_all(fds: list[int]) -> list[bytes]:
    """Every byte of each pipe until its writer closes it, read side by side (a child blocks once its
    pipe's buffer is full, so the pipes cannot be read one after another)."""
    import selectors

    chunks: dict[int, list[bytes]] = {fd: [] for fd in fds}
    with selectors.DefaultSelector() as sel:
        for fd in fds:
            sel.register(fd, selectors.EVENT_READ)
        open_fds = len(fds)
        while open_fds:
            for key, _ in sel.select():
                data = os.read(key.fd, 1 << 20)
                if data:
                    chunks[key.fd].append(data)
                else:
                    sel.unregister(key.fd)
                    open_fds -= 1
    return [b"".join(chunks[fd]) for fd in fds]
