"""uvicorn's HTTP/1.1 protocol with a deadline on the request head.

uvicorn bounds an idle kept-alive connection, but not one that is sending its headers: a client
that sends a header byte every few seconds holds its socket (and a file descriptor) for ever, and a
thousand of them starve the server. Here a connection must complete each request head within
`header_timeout_s` of opening, or of its first byte after the previous response; otherwise it is
closed. The body is bounded by the guard (security.py: idle and minimum-rate timeouts, 408).
"""

from __future__ import annotations

import resource

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class HeadTimeoutProtocol(H11Protocol):
    header_timeout_s = 10.0

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_cycle = None  # the request in progress when the clock started: a new one stops it
        self._head_timer = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and self.cycle is self._head_cycle:  # the first byte of a next request
            self._arm()
        super().data_received(data)

    def on_response_complete(self) -> None:
        self._disarm()
        self._head_cycle = self.cycle  # before a pipelined request starts in super()
        super().on_response_complete()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.cycle is self._head_cycle and not self.transport.is_closing():  # still no complete head
            try:
                self.conn.send(h11.ConnectionClosed())
            except h11.LocalProtocolError:
                pass
            self.transport.close()


def protocol(header_timeout_s: float) -> type[HeadTimeoutProtocol]:
    """The protocol class uvicorn builds per connection, with this deadline."""
    return type("HeadTimeoutProtocol", (HeadTimeoutProtocol,), {"header_timeout_s": header_timeout_s})


def raise_open_files_limit() -> int:
    """The soft limit on open files raised to the hard one (many keep 1024): each connection is one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            pass
    return soft
