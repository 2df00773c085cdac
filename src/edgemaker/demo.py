"""Generate a small labelled image set offline (shapes on textured backgrounds) for `make demo`."""

from __future__ import annotations

import argparse
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


def make_dataset(root: Path, per_class: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        folder = root / shape
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw_shape(shape, rng).save(folder / f"{shape}_{i:03d}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--holdout", type=int, default=15, help="images per class in a separate holdout folder")
    args = parser.parse_args()
    make_dataset(args.out / "shapes", args.per_class, seed=1)
    make_dataset(args.out / "holdout", args.holdout, seed=2)
    print(f"wrote {args.out / 'shapes'} ({args.per_class}/class) and {args.out / 'holdout'} ({args.holdout}/class)")


if __name__ == "__main__":
    main()
