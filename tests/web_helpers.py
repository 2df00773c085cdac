"""Helpers shared by the web app tests: a synchronous in-process client and run polling."""

from __future__ import annotations

import asyncio
import io
import time

import httpx
import numpy as np
import soundfile as sf

BASE = "http://127.0.0.1:8765"


class Api:
    """Calls the ASGI app in-process through httpx's ASGI transport (no socket, no server)."""

    def __init__(self, app, base: str = BASE) -> None:
        self.app, self.base = app, base

    def request(self, method: str, url: str, **kw) -> httpx.Response:
        async def go():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=self.base) as c:
                return await c.request(method, url, **kw)

        return asyncio.run(go())

    def get(self, url, **kw):
        return self.request("GET", url, **kw)

    def post(self, url, **kw):
        return self.request("POST", url, **kw)

    def patch(self, url, **kw):
        return self.request("PATCH", url, **kw)

    def delete(self, url, **kw):
        return self.request("DELETE", url, **kw)

    def wait_run(self, project: str, run: str, until=("done", "failed", "cancelled", "interrupted"),
                 timeout: float = 600) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = self.get(f"/api/v1/projects/{project}/runs/{run}").json()
            if r["status"]["state"] in until:
                return r
            time.sleep(0.5)
        raise AssertionError(f"run {run} did not reach {until} in {timeout} s")


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    """Every error leaves in one shape: {"error": {"status", "code", "message"}}."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"status", "code", "message"}, body
    assert body["error"]["status"] == status and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code, body
    return body["error"]


def png_bytes(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def wav_bytes(freq: float, seconds: float = 1.0, rate: int = 16000, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.4 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.normal(size=t.size)
    buf = io.BytesIO()
    sf.write(buf, wave.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def png_bomb(width: int = 11000, height: int = 11000) -> bytes:
    """A valid PNG of all-zero 16-bit RGBA rows: under 1 MB on disk, width x height x 8 bytes decoded
    (11000 x 11000: 121 MP, 968 MB)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # All-zero rows (filter byte 0 included): one deflate block of a zero chunk after a full flush
    # repeats byte for byte, so the stream is built without compressing a gigabyte.
    total, piece = height * (1 + width * 8), 1 << 22
    packer = zlib.compressobj(9)
    head = packer.compress(bytes(piece)) + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(bytes(piece)) + packer.flush(zlib.Z_FULL_FLUSH)
    count, rest = divmod(total, piece)
    tail = packer.compress(bytes(rest)) + packer.flush()
    adler = struct.pack(">I", ((total % 65521) << 16) | 1)  # Adler-32 of `total` zero bytes
    body = head + block * (count - 1) + tail[:-4] + adler
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
