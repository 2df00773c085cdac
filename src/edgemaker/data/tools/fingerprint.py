"""Content fingerprints that survive resizing, re-encoding and gain changes, for near-duplicates.

Images: a 64-bit DCT perceptual hash (pHash) and a 64-bit difference hash (dHash) of the upright
grayscale picture; a resized or re-compressed copy differs in a few bits, another photo in ~32.
Sounds: after trimming frames 40 dB below the clip's loudest, a 16-band log-mel image squeezed to
32 time steps; bits are the signs of band-to-band and step-to-step differences, so a gain change
(a constant in log energy) leaves them unchanged; energies 50 dB under the loudest count as equal.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np

IMAGE_BITS = 64
SOUND_RATE = 16000
SOUND_STEPS = 32
SOUND_BANDS = 16
SOUND_MAX_SECONDS = 120.0  # a fingerprint of the first two minutes is enough to spot a copy
TRIM_DB = 40.0
FLOOR_DB = 50.0  # band energies (power) below the loudest minus this are equal


@lru_cache(maxsize=1)
def _dct_matrix(n: int = 32) -> np.ndarray:
    k, i = np.arange(n)[:, None], np.arange(n)[None]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


def _hex(bits: np.ndarray) -> str:
    return np.packbits(bits.astype(bool).ravel()).tobytes().hex()


def image_fingerprint(path: Path) -> dict:
    """Header facts (format, stored size, mode) and the two hashes, as hex strings."""
    from PIL import Image

    from ..images import decode_image

    from ..sources import read_bytes

    data = read_bytes(path)
    with Image.open(io.BytesIO(data)) as head:
        info = {"format": head.format or "?", "width": head.width, "height": head.height, "mode": head.mode}
    gray = decode_image(data, min_side=64).convert("L")
    small = np.asarray(gray.resize((32, 32), Image.Resampling.LANCZOS), np.float64)
    dct = _dct_matrix() @ small @ _dct_matrix().T
    low = dct[:8, :8].ravel()
    info["phash"] = _hex(low > np.median(low))
    d = np.asarray(gray.resize((9, 8), Image.Resampling.LANCZOS), np.float64)
    info["dhash"] = _hex(d[:, 1:] > d[:, :-1])
    return info


@lru_cache(maxsize=1)
def _mel():
    from ...backbones.frontends import LogMelSpec

    return LogMelSpec(sample_rate=SOUND_RATE, win_length=512, hop_length=256, n_fft=512, n_mels=SOUND_BANDS,
                      fmin=60.0, fmax=7600.0, power=2.0, log_offset=1e-12)


def _squeeze(x: np.ndarray, steps: int) -> np.ndarray:
    """(frames, bands) -> (steps, bands): mean over equal spans (or repeat a short clip's frames)."""
    edges = np.linspace(0, len(x), steps + 1)
    out = np.empty((steps, x.shape[1]))
    for i in range(steps):
        a = int(np.floor(edges[i]))
        b = max(a + 1, int(np.ceil(edges[i + 1])))
        out[i] = x[a:min(b, len(x))].mean(axis=0)
    return out


def sound_fingerprint(path: Path) -> dict:
    """Header facts (format, rate, channels, duration) and a gain-invariant bit fingerprint.

    `fingerprint` is None for a clip with no sound above the trim level (nothing to compare).
    """
    from ..audio import probe_audio, stream_mono

    head = probe_audio(path)
    info = {"format": head["format"], "subtype": head["subtype"], "sample_rate": head["sample_rate"],
            "channels": head["channels"], "duration_s": round(head["duration_s"], 3)}
    limit = int(SOUND_MAX_SECONDS * SOUND_RATE)
    blocks, got = [], 0
    for block in stream_mono(path, SOUND_RATE):
        blocks.append(block[: limit - got])
        got += len(blocks[-1])
        if got >= limit:
            break
    x = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    frame = SOUND_RATE // 100
    n = len(x) // frame * frame
    info["fingerprint"] = None
    if n == 0:
        return info
    rms = np.sqrt((x[:n].reshape(-1, frame).astype(np.float64) ** 2).mean(axis=1))
    if rms.max() <= 1e-6:
        return info
    loud = rms >= rms.max() * 10 ** (-TRIM_DB / 20)
    x = x[:n].reshape(-1, frame)[loud].ravel()
    spec = _mel()
    if len(x) < spec.win_length:
        x = np.pad(x, (0, spec.win_length - len(x)))
    logmel = spec.compute(x).astype(np.float64)
    # Bands far below the clip's loudest are quantization noise whose signs flip with any gain change.
    logmel = _squeeze(np.maximum(logmel, logmel.max() - FLOOR_DB / 10 * np.log(10)), SOUND_STEPS)
    bits = np.concatenate([(np.diff(logmel, axis=1) > 0).ravel(), (np.diff(logmel, axis=0) > 0).ravel()])
    info["fingerprint"] = _hex(bits)
    return info


SOUND_BITS = SOUND_STEPS * (SOUND_BANDS - 1) + (SOUND_STEPS - 1) * SOUND_BANDS


def to_matrix(hexes: list[str]) -> np.ndarray:
    """Hex fingerprints (same length) -> (N, bytes) uint8 for fast Hamming distances."""
    return np.frombuffer(b"".join(bytes.fromhex(h) for h in hexes), np.uint8).reshape(len(hexes), -1)


def close_pairs(matrix: np.ndarray, max_bits: int) -> list[tuple[int, int, int]]:
    """All (i, j, distance) with i < j and Hamming distance <= max_bits, in blocks of rows."""
    out: list[tuple[int, int, int]] = []
    n = len(matrix)
    for start in range(0, n, 256):
        block = matrix[start:start + 256]
        dist = np.bitwise_count(block[:, None, :] ^ matrix[None, :, :]).sum(axis=2, dtype=np.int32)
        for bi, j in zip(*np.nonzero(dist <= max_bits)):
            i = start + int(bi)
            if i < j:
                out.append((i, int(j), int(dist[bi, j])))
    return out
