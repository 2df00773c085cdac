"""The rules every request passes before any route sees it, as one ASGI middleware:

- Host: on a loopback bind only localhost names are served (a DNS-rebinding page gets 421);
- token: on a non-loopback bind every request needs the start-up token (header, cookie, or
  `?token=` on the page, which sets the cookie);
- same origin: a state-changing request from another site's page (Origin or Sec-Fetch-Site) is refused;
- size: a body above the limit is refused from its Content-Length before it is read, and a body
  without a length (chunked) is refused.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
COOKIE = "edgemaker_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 512 * 1024 * 1024  # one request (a folder dropped at once)
    max_file_bytes: int = 50 * 1024 * 1024  # one uploaded file
    max_files: int = 1000  # files in one request


@dataclass(frozen=True)
class SecurityConfig:
    token: str | None = None  # required on every request when set (non-loopback binds)
    loopback_only: bool = True  # Host header must name this machine
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
            status, code, message = problem
            body = error_body(status, code, message)
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    def _check(self, scope, headers: dict) -> tuple[int, str, str] | None:
        if self.config.loopback_only and host_name(headers.get("host", "")) not in LOOPBACK_HOSTS:
            return 421, "bad_host", "this server answers only to localhost / 127.0.0.1"
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
            if int(length) > self.config.limits.max_body_bytes:
                return 413, "too_large", (f"request body {int(length) / 1e6:.1f} MB is over the "
                                          f"{self.config.limits.max_body_bytes / 1e6:.0f} MB limit; send fewer files at once")
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
