"""A bounded, order-keeping map over a thread pool: shared by validation, extraction and export checks."""

from __future__ import annotations

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
