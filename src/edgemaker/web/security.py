"""The rules every request passes before any route sees it, as one ASGI middleware:

- Host: on a loopback bind only localhost names and the bound address are served (a DNS-rebinding
  page gets 421);
- token: on a non-loopback bind every request needs the start-up token (header, cookie, or
  `?token=` on the page, which sets the cookie);
- same origin: a state-changing request from another site's page (Origin or Sec-Fetch-Site) is refused;
- size: a body above the limit is refused from its Content-Length before it is read (a predict
  upload holds one file: its limit is one file's), a body without a length (chunked) is refused, and
  the bytes are counted as they arrive, so no body grows past its limit whatever the headers say;
- time: a body must keep arriving (`upload_idle_s` without a byte, or slower than `upload_min_rate`
  after `upload_grace_s`, is 408). Bodies are read on the event loop, never in a worker thread, so a
  slow client ties up neither a thread nor other requests.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
COOKIE = "edgemaker_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PREDICT_PATH = "/api/v1/predict"


class BodyRefused(Exception):
    """Raised into the app's body read when the guard cuts a body off (too large, too slow)."""


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 512 * 1024 * 1024  # one request (a folder dropped at once)
    max_file_bytes: int = 50 * 1024 * 1024  # one uploaded file
    max_files: int = 1000  # files in one request
    upload_idle_s: float = 15.0  # no byte of the body for this long: 408
    upload_grace_s: float = 30.0  # then the body must average at least upload_min_rate bytes/s
    upload_min_rate: int = 50_000
    header_timeout_s: float = 10.0  # a request head (line and headers) must arrive within this (web/server.py)

    def body_limit(self, path: str) -> int:
        """The most bytes a request to `path` may send: one file (plus the form's framing) for a prediction."""
        return self.max_file_bytes + 64 * 1024 if path == PREDICT_PATH else self.max_body_bytes


@dataclass(frozen=True)
class SecurityConfig:
    token: str | None = None  # required on every request when set (non-loopback binds)
    loopback_only: bool = True  # Host header must name this machine
    hosts: frozenset[str] = LOOPBACK_HOSTS  # the names it may use: localhost's, and the address bound

    @classmethod
    def for_bind(cls, host: str, loopback: bool, **kw) -> SecurityConfig:
        """The Host names a loopback bind answers to, derived from the address it listens on
        (`--host 127.0.0.2` is reached as 127.0.0.2)."""
        name = host.strip().lower().strip("[]")
        return cls(loopback_only=loopback, hosts=LOOPBACK_HOSTS | {name, f"[{name}]"}, **kw)
    limits: Limits = field(default_factory=Limits)


def error_body(status: int, code: str, message: str) -> bytes:
    return json.dumps({"error": {"status": status, "code": code, "message": message}}).encode()


def host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    def __init__(self, app, config: SecurityConfig) -> None:
        self.app, self.config = app, config

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        problem = self._check(scope, headers)
        if problem is None and self.config.token:
            problem, set_cookie = self._check_token(scope, headers)
            if set_cookie:
                return await self._redirect_with_cookie(send)
        if problem:
            return await self._answer(send, *problem)
        await self._guarded(scope, receive, send, headers)

    async def _guarded(self, scope, receive, send, headers: dict) -> None:
        """Run the app with the body counted and timed as it arrives; a body cut off is answered
        413/408 by the guard, whatever the app made of the truncated read."""
        limits = self.config.limits
        limit = limits.body_limit(scope["path"])
        length = int(headers.get("content-length") or 0)
        deadline = time.monotonic() + limits.upload_grace_s + length / max(limits.upload_min_rate, 1)
        state = {"bytes": 0, "refused": None, "started": False, "complete": False}

        async def counted_receive():
            if state["refused"]:
                raise BodyRefused(state["refused"][2])
            if state["complete"]:  # the body is in; now only a disconnect can come (SSE waits here for long)
                return await receive()
            timeout = min(limits.upload_idle_s, max(deadline - time.monotonic(), 0.0))
            try:
                message = await asyncio.wait_for(receive(), timeout=timeout)
            except TimeoutError:
                state["refused"] = (408, "upload_timeout", (f"the upload arrived too slowly; the server stopped waiting "
                                                            f"(at least {limits.upload_min_rate / 1000:.0f} kB/s, "
                                                            f"no pause over {limits.upload_idle_s:.0f} s)"))
                raise BodyRefused(state["refused"][2]) from None
            if message["type"] == "http.request":
                state["complete"] = not message.get("more_body", False)
                state["bytes"] += len(message.get("body", b""))
                if state["bytes"] > limit:
                    state["refused"] = (413, "too_large", f"request body is over the {limit / 2**20:.0f} MiB limit"
                                                          + (" for one file" if scope["path"] == PREDICT_PATH else
                                                             "; send fewer files at once"))
                    raise BodyRefused(state["refused"][2])
            return message

        async def tracked_send(message):
            if state["refused"]:
                return  # the app's answer to a cut-off body is replaced by the guard's
            state["started"] = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except Exception:
            if not state["refused"]:
                raise
        if state["refused"] and not state["started"]:
            await self._answer(send, *state["refused"], close=True)

    @staticmethod
    async def _answer(send, status: int, code: str, message: str, close: bool = False) -> None:
        body = error_body(status, code, message)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if close:  # the rest of the body is not read: the connection cannot be reused
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _check(self, scope, headers: dict) -> tuple[int, str, str] | None:
        if self.config.loopback_only and host_name(headers.get("host", "")) not in self.config.hosts:
            names = sorted(h for h in self.config.hosts if not h.startswith("["))
            return 421, "bad_host", f"this server answers only to {' / '.join(names)}"
        method = scope["method"]
        if method in UNSAFE_METHODS:
            origin = headers.get("origin")
            own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
            if origin is not None and origin != own:
                return 403, "cross_origin", f"requests from {origin} may not change this server's data"
            if headers.get("sec-fetch-site") in ("cross-site", "same-site"):
                return 403, "cross_origin", "requests from another site may not change this server's data"
            if "chunked" in headers.get("transfer-encoding", "").lower():
                return 411, "length_required", "send uploads with a Content-Length"
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return 400, "bad_request", "invalid Content-Length"
            limit = self.config.limits.body_limit(scope["path"])
            if int(length) > limit:
                return 413, "too_large", (f"request body {int(length) / 2**20:.1f} MiB is over the "
                                          f"{limit / 2**20:.0f} MiB limit"
                                          + (" for one file" if scope["path"] == PREDICT_PATH else
                                             "; send fewer files at once"))
        return None

    def _check_token(self, scope, headers: dict) -> tuple[tuple[int, str, str] | None, bool]:
        expected = self.config.token or ""
        given = []
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given.append(auth[7:].strip())
        if "x-edgemaker-token" in headers:
            given.append(headers["x-edgemaker-token"])
        if "cookie" in headers:
            cookie = SimpleCookie()
            try:
                cookie.load(headers["cookie"])
            except Exception:  # noqa: BLE001 - a malformed cookie header is just no token
                pass
            if COOKIE in cookie:
                given.append(cookie[COOKIE].value)
        if any(hmac.compare_digest(g.encode(), expected.encode()) for g in given):
            return None, False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if scope["method"] == "GET" and scope["path"] == "/" and query.get("token"):
            if hmac.compare_digest(query["token"][0].encode(), expected.encode()):
                return None, True
        return (401, "unauthorized", "this server needs the token printed when it started "
                                     "(open the printed URL, or send 'Authorization: Bearer <token>')"), False

    async def _redirect_with_cookie(self, send) -> None:
        cookie = f"{COOKIE}={self.config.token}; Path=/; HttpOnly; SameSite=Strict"
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", b"/"), (b"set-cookie", cookie.encode()), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
