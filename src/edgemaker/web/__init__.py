"""The local web app: `edgemaker serve`. Needs the `web` extra (FastAPI, uvicorn, python-multipart)."""

from __future__ import annotations

import ipaddress
import secrets
import socket
from pathlib import Path

from ..errors import EdgemakerError, MissingDependencyError

DEFAULT_PORT = 8765


def require_web() -> None:
    for module, package in (("fastapi", "fastapi"), ("uvicorn", "uvicorn"), ("multipart", "python-multipart")):
        try:
            __import__(module)
        except ImportError:
            raise MissingDependencyError(package, "web", "The web app") from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int | None) -> socket.socket:
    """A listening socket: `port`, or DEFAULT_PORT when free, else any free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for candidate in ([port] if port is not None else [DEFAULT_PORT, 0]):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), candidate))
        except OSError as exc:
            sock.close()
            if port is not None:
                raise EdgemakerError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None
            continue
        sock.listen(2048)  # a burst of connections waits to be accepted rather than being refused
        return sock
    raise EdgemakerError(f"cannot listen on {host}; choose another --host")


def batch_window_ms() -> float:
    """EDGEMAKER_SERVE_BATCH_MS: the micro-batching window for concurrent predictions (0: off)."""
    import os

    from .app import WebConfig

    text = os.environ.get("EDGEMAKER_SERVE_BATCH_MS", "")
    try:
        return max(float(text), 0.0) if text else WebConfig.batch_window_ms
    except ValueError:
        raise EdgemakerError(f"EDGEMAKER_SERVE_BATCH_MS={text!r}: give milliseconds, e.g. 5 (0: off)") from None


def serve(home: Path | None, model: Path | None, host: str, port: int | None, token: str | None,
          open_browser: bool, echo=print) -> None:
    require_web()
    import uvicorn

    from .app import WebConfig, create_app
    from .security import SecurityConfig

    loopback = is_loopback(host)
    if not loopback and not token:
        token = secrets.token_urlsafe(24)
    if model is not None:
        from ..export.runtime import load_exported

        load_exported(model)  # a bad file fails here, in one line, not on the first request
        home = None
    else:
        home = Path(home or "edgemaker-projects")
        if home.exists() and not home.is_dir():
            raise EdgemakerError(f"{home}: is a file; pass a folder for the projects")
        home.mkdir(parents=True, exist_ok=True)
    security = SecurityConfig.for_bind(host, loopback, token=token)
    app = create_app(WebConfig(home=home, model=model, security=security, batch_window_ms=batch_window_ms()))
    sock = bind(host, port)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{sock.getsockname()[1]}/"
    if token:
        url += f"?token={token}"
    echo(f"edgemaker {'serving ' + str(model) if model else 'projects in ' + str(home.resolve())}")
    echo(f"open {url}" + ("" if loopback else "   (the token is needed from other machines too)"))
    if model is not None:
        echo(f"predict: curl -F file=@photo.jpg {url.split('?')[0]}api/v1/predict"
             + (f" -H 'Authorization: Bearer {token}'" if token else ""))
    echo("press Ctrl-C to stop")
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    from .server import protocol, raise_open_files_limit

    raise_open_files_limit()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_keep_alive=30,
                                           http=protocol(security.limits.header_timeout_s)))
    server.run(sockets=[sock])
