"""Oversized and slow uploads against a real uvicorn server on loopback: refused early (413 from the
Content-Length, before the body is read; 413 counted while streaming), a stalled or trickling body
is cut off (408), and meanwhile other requests are answered at once."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from web_models import png  # noqa: E402

from edgemaker.web.app import WebConfig, create_app  # noqa: E402
from edgemaker.web.security import Limits, SecurityConfig  # noqa: E402

LIMITS = Limits(max_body_bytes=400_000, max_file_bytes=100_000, max_files=5,
                upload_idle_s=1.0, upload_grace_s=1.0, upload_min_rate=20_000)
SAMPLES = "/api/v1/projects/pets/classes/cat/samples"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    app = create_app(WebConfig(home=tmp_path_factory.mktemp("limits") / "projects",
                               security=SecurityConfig(limits=LIMITS)))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with httpx.Client(base_url=url, timeout=10) as c:
        assert c.post("/api/v1/projects", json={"name": "pets", "task": "image"}).status_code == 201
        assert c.post("/api/v1/projects/pets/classes", json={"name": "cat"}).status_code == 201
    yield url, sock.getsockname()[1]
    srv.should_exit = True
    thread.join(10)


def _raw(port: int, head: str, body: bytes = b"") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(head.encode() + b"\r\n" + body)
    return s


def _status(s: socket.socket) -> tuple[int, bytes]:
    """The response's status and its bytes (headers and the whole body, by its Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]), data


def _length(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    return next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.startswith(b"content-length:")), 0)


def _post_head(path: str, length: int) -> str:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n")


def test_oversized_bodies_are_refused_before_they_are_read(server):
    url, port = server
    # a prediction holds one file: its limit is one file's, from the header alone (no byte of body sent)
    t = time.monotonic()
    status, data = _status(_raw(port, _post_head("/api/v1/predict?project_name=pets", 200_000)))
    assert status == 413 and b"for one file" in data and time.monotonic() - t < 2
    status, _ = _status(_raw(port, _post_head(SAMPLES, 10_000_000)))
    assert status == 413
    with httpx.Client(base_url=url, timeout=10) as c:  # one file over the per-file limit in a folder upload
        r = c.post(SAMPLES, files=[("files", ("big.png", png("stripes", 1, size=400), "image/png"))])
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


def test_bytes_are_counted_as_they_arrive(tmp_path):
    """A body whose length was not declared (or lies) is cut at the limit, not read to the end."""
    from web_helpers import Api

    app = create_app(WebConfig(home=tmp_path, security=SecurityConfig(limits=LIMITS)))
    Api(app).post("/api/v1/projects", json={"name": "pets", "task": "image"})
    Api(app).post("/api/v1/projects/pets/classes", json={"name": "cat"})
    sent, out = [0], []

    async def receive():
        sent[0] += 1  # one file part that never ends
        head = b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n' if sent[0] == 1 else b""
        return {"type": "http.request", "body": head + b"x" * 50_000, "more_body": sent[0] < 1000}

    async def send(message):
        out.append(message)

    scope = {"type": "http", "method": "POST", "path": SAMPLES, "raw_path": SAMPLES.encode(),
             "query_string": b"", "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"multipart/form-data; boundary=b")],
             "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "http_version": "1.1",
             "root_path": "", "app": app}
    asyncio.run(app(scope, receive, send))
    assert out[0]["status"] == 413 and sent[0] <= 10  # 400 kB limit: stopped at the ninth 50 kB chunk


def test_a_slow_upload_is_cut_off_and_does_not_hold_up_others(server):
    url, port = server
    stalled = _raw(port, _post_head(SAMPLES, 20_000), b"--b\r\n")  # then nothing: idle for over 1 s
    trickle = _raw(port, _post_head(SAMPLES, 20_000), b"--b\r\n")  # a byte every 0.2 s: never idle, far too slow
    t0 = time.monotonic()
    done = threading.Event()

    def drip():
        while not done.is_set():
            try:
                trickle.sendall(b"x")
            except OSError:
                return
            time.sleep(0.2)

    threading.Thread(target=drip, daemon=True).start()
    with httpx.Client(base_url=url, timeout=10) as c:  # meanwhile the server answers everyone else at once
        for _ in range(3):
            t = time.monotonic()
            r = c.post(SAMPLES, files=[("files", ("ok.png", png("checks", 2), "image/png"))])
            assert r.status_code == 201 and time.monotonic() - t < 1.0, r.text
    status, data = _status(stalled)
    assert status == 408 and b"upload_timeout" in data and 0.8 < time.monotonic() - t0 < 5
    status, data = _status(trickle)  # deadline: grace 1 s + 20 kB at 20 kB/s = 2 s
    done.set()
    assert status == 408 and 1.5 < time.monotonic() - t0 < 6
