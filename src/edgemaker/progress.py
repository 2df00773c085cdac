"""Progress reporting that the CLI shows as bars and scripts (--quiet, --json) switch off."""

from __future__ import annotations

import sys
from typing import Protocol


class Bar(Protocol):
    def update(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


class Progress(Protocol):
    def bar(self, total: int, desc: str) -> Bar: ...
    def log(self, message: str) -> None: ...


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
