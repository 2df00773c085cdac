"""Generated labelled image and sound sets (shapes and tones), offline: data for tests and benchmarks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPES = ("circle", "square", "triangle")


def draw_shape(shape: str, rng: np.random.Generator, size: int = 160) -> Image.Image:
    """One picture of `shape`: random colours, position, scale, rotation, noisy background."""
    base = rng.integers(0, 256, 3)
    noise = rng.normal(0, 25, (size, size, 3)) + base
    im = Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.5))
    draw = ImageDraw.Draw(im)
    color = tuple(int(c) for c in (255 - base + rng.integers(-40, 40, 3)) % 256)
    r = rng.uniform(0.22, 0.38) * size
    cx, cy = rng.uniform(r, size - r, 2)
    angle = rng.uniform(0, 2 * math.pi)
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
    else:
        corners = 4 if shape == "square" else 3
        pts = [(cx + r * math.cos(angle + 2 * math.pi * i / corners), cy + r * math.sin(angle + 2 * math.pi * i / corners))
               for i in range(corners)]
        draw.polygon(pts, fill=color)
    return im


def _write_classes(root: Path, classes, per_class: int, seed: int, write) -> None:
    """write(kind, rng, path_without_suffix) for `per_class` files of each class, seeded."""
    rng = np.random.default_rng(seed)
    for kind in classes:
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            write(kind, rng, folder / f"{kind}_{i:03d}")


def make_dataset(root: Path, per_class: int, seed: int) -> None:
    _write_classes(root, SHAPES, per_class, seed,
                   lambda kind, rng, stem: draw_shape(kind, rng).save(stem.with_suffix(".jpg"), quality=90))


SOUNDS = ("whistle", "knock", "hum")
SOUND_RATE = 16000


def synth_sound(kind: str, rng: np.random.Generator, seconds: float = 2.0, rate: int = SOUND_RATE) -> np.ndarray:
    """One clip of `kind` over quiet room noise: random pitch, timing and loudness."""
    t = np.arange(int(seconds * rate)) / rate
    out = rng.normal(0, 0.003, len(t))
    if kind == "whistle":  # a gliding tone
        f0, f1 = rng.uniform(900, 1600), rng.uniform(1400, 2600)
        start, length = rng.uniform(0, 0.6), rng.uniform(0.7, 1.2)
        on = (t >= start) & (t < start + length)
        phase = 2 * np.pi * np.cumsum(np.where(on, f0 + (f1 - f0) * (t - start) / length, 0)) / rate
        out += on * np.sin(phase) * rng.uniform(0.2, 0.5)
    elif kind == "knock":  # decaying broadband clicks
        for onset in np.sort(rng.uniform(0, seconds - 0.2, rng.integers(2, 5))):
            i = int(onset * rate)
            n = int(0.12 * rate)
            burst = rng.normal(0, 1, n) * np.exp(-np.arange(n) / (0.015 * rate))
            out[i : i + n] += np.convolve(burst, np.ones(6) / 6, "same")[: len(out) - i] * rng.uniform(0.3, 0.7)
    else:  # hum: a low harmonic buzz
        f = rng.uniform(90, 180)
        out += sum(np.sin(2 * np.pi * f * k * t + rng.uniform(0, 6)) / k for k in range(1, 6)) * rng.uniform(0.05, 0.2)
    return np.clip(out, -1, 1).astype(np.float32)


def make_sound_dataset(root: Path, per_class: int, seed: int) -> None:
    import soundfile as sf

    _write_classes(root, SOUNDS, per_class, seed, lambda kind, rng, stem: sf.write(
        stem.with_suffix(".wav"), synth_sound(kind, rng), SOUND_RATE, subtype="PCM_16"))
