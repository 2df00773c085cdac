"""Progress reporting that the CLI shows as bars and scripts (--quiet, --json) switch off."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Protocol


class Bar(Protocol):
    def update(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


class Progress(Protocol):
    def bar(self, total: int, desc: str) -> Bar: ...
    def log(self, message: str) -> None: ...
    def epoch(self, tag: str, record) -> None: ...  # after each head epoch (an EpochRecord)


class _NullBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class SilentProgress:
    def bar(self, total: int, desc: str) -> Bar:
        return _NullBar()

    def log(self, message: str) -> None:
        pass

    def epoch(self, tag: str, record) -> None:
        pass


class ConsoleProgress:
    """tqdm bars and messages on stderr, so stdout stays clean for results."""

    def bar(self, total: int, desc: str) -> Bar:
        from tqdm import tqdm

        if total <= 0:  # nothing to do (e.g. everything cached): no empty bar
            return _NullBar()
        # disable=None: bars only on a terminal; logs and pipes get the summary lines alone.
        return tqdm(total=total, desc=desc, unit="it", file=sys.stderr, leave=False, dynamic_ncols=True, disable=None)

    def log(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def epoch(self, tag: str, record) -> None:
        pass  # the summary line after training says enough on a terminal


class EventProgress:
    """Progress as a stream of small dicts (the web app's training worker writes them as JSON lines).
    Bars report at most every `interval` seconds, plus their first and last step."""

    def __init__(self, emit: Callable[[dict], None], interval: float = 0.25) -> None:
        self.emit = emit
        self.interval = interval

    def bar(self, total: int, desc: str) -> Bar:
        return _EventBar(self, total, desc)

    def log(self, message: str) -> None:
        self.emit({"type": "log", "message": message})

    def epoch(self, tag: str, record) -> None:
        self.emit({"type": "epoch", "backbone": tag, **vars(record)})


class _EventBar:
    def __init__(self, owner: EventProgress, total: int, desc: str) -> None:
        self.owner, self.total, self.desc, self.done, self._last = owner, total, desc, 0, 0.0
        self._send()

    def _send(self) -> None:
        self._last = time.monotonic()
        self.owner.emit({"type": "progress", "stage": self.desc, "done": self.done, "total": self.total})

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.done >= self.total or time.monotonic() - self._last >= self.owner.interval:
            self._send()

    def close(self) -> None:
        if self._last and self.done < self.total:
            self._send()
