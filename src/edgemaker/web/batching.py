"""Concurrent predictions of one model run as one ONNX Runtime call.

Each request prepares its own inputs (decode, resize, windows) in its worker thread, then hands them
to the model's batcher. `runners` threads run the model (not one per request: 32 concurrent ONNX
Runtime calls on a few cores thrash, and the unlucky request waits seconds): a runner takes the first
waiting request and, while other requests are in flight, waits up to `window_s` for them to join,
then runs every window of every request in one call and hands each request the mean of its rows. A request alone runs at once
(no added latency when the server is idle). Whether this pays is measured by bench/serve_load.py.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future

import numpy as np


class MicroBatcher:
    def __init__(self, model, window_s: float = 0.005, max_rows: int = 32, runners: int = 2) -> None:
        self.model, self.window_s, self.max_rows = model, window_s, max_rows
        self._queue: queue.Queue = queue.Queue()
        self._active = 0  # requests between enter() and their result: the ones worth waiting for
        self._lock = threading.Lock()
        self._running = 0  # requests inside another runner's call: not coming to this queue
        for i in range(runners):
            threading.Thread(target=self._loop, name=f"edgemaker-batcher-{i}", daemon=True).start()

    def enter(self) -> None:
        """A request has started (it will call predict soon): the batcher may wait for it."""
        with self._lock:
            self._active += 1

    def leave(self) -> None:
        with self._lock:
            self._active -= 1

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """One file's prepared windows -> its probabilities (the mean over its windows)."""
        future: Future = Future()
        self._queue.put((windows, future))
        return future.result()

    def _loop(self) -> None:
        while True:
            items = [self._queue.get()]
            rows = len(items[0][0])
            deadline = time.monotonic() + self.window_s
            while rows < self.max_rows and len(items) < self._active - self._running:
                try:
                    item = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
                except queue.Empty:
                    break
                items.append(item)
                rows += len(item[0])
            with self._lock:
                self._running += len(items)
            try:
                batch = np.concatenate([w for w, _ in items])
                proba = np.concatenate([self.model.predict_proba(batch[i:i + self.max_rows])
                                        for i in range(0, len(batch), self.max_rows)])
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
                for _, future in items:
                    future.set_exception(exc)
                continue
            finally:
                with self._lock:
                    self._running -= len(items)
            offset = 0
            for windows, future in items:
                future.set_result(proba[offset:offset + len(windows)].mean(axis=0))
                offset += len(windows)
