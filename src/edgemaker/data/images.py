"""Decode any common image file into RGB and turn it into a backbone's input tensor.

Decoding is defensive (EXIF orientation, 16-bit, alpha, palette, CMYK, decompression bombs) because
users' folders hold whatever their phones and scanners wrote. Preprocessing follows the backbone
spec so training, evaluation and the exported model's `predict` all see the same pixels.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..backbones.spec import ImageInput
from .limits import over_limit

MAX_PIXELS = 128_000_000  # decompression-bomb guard: larger images are skipped with a reason
_BACKGROUND = (255, 255, 255)


class ImageDecodeError(ValueError):
    """The bytes are not an image we can use; the message is the reason shown to the user."""


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise ImageDecodeError("float image holds NaN or infinite pixels")
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if arr.max(initial=0) > 65535 or arr.min(initial=0) < 0:  # float or 32-bit data: stretch
            lo, hi = float(arr.min()), float(arr.max())
            arr, top = arr - lo, max(hi - lo, 1e-12)
        arr8 = np.clip(arr * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
    if mode == "P" and "transparency" in im.info:
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, _BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return im if mode == "RGB" else im.convert("RGB")


def decoded_bytes(im: Image.Image) -> int:
    """What decoding `im` (opened, not loaded) will hold: width x height x channels x bytes per
    channel, from the header (a 16-bit PNG's raw mode says ;16 even where PIL keeps 8 bits)."""
    mode = im.mode
    per = 4 if mode in ("I", "F") else 2 if mode.startswith("I;16") else 1
    for tile in im.tile or ():
        args = tile[3] if len(tile) > 3 else ""
        raw = str(args[0] if isinstance(args, tuple) and args else args)
        per = max(per, 4 if ";32" in raw else 2 if ";16" in raw else 1)
    return im.size[0] * im.size[1] * len(im.getbands()) * per


def decode_image(data: bytes, min_side: int | None = None) -> Image.Image:
    """Decode the first frame of `data` to an upright RGB image.

    `min_side`: the smallest short side the caller needs; large JPEGs are decoded at a reduced DCT
    scale down to it, which is several times faster than full decoding followed by a resize.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageDecodeError(
                    f"image is {w}x{h} pixels, over the {MAX_PIXELS // 1_000_000} MP limit "
                    "(decompression-bomb guard): downscale it"
                )
            if w < 1 or h < 1:
                raise ImageDecodeError("image has no pixels")
            if min_side and im.format == "JPEG" and min(w, h) >= 2 * min_side:
                scale = min(w, h) / min_side
                im.draft("RGB", (math.ceil(w / scale), math.ceil(h / scale)))
            too_big = over_limit(decoded_bytes(im), f"image {w}x{h}, {len(im.getbands())} channels")
            if too_big:  # from the header, after any draft: nothing is decoded yet
                raise ImageDecodeError(too_big)
            im.seek(0)
            im.load()
            im = ImageOps.exif_transpose(im) or im
            return _to_rgb(im)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError:
        raise ImageDecodeError(f"image is over the {MAX_PIXELS // 1_000_000} MP limit (decompression-bomb guard)") from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image (unrecognised content)") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        raise ImageDecodeError(f"corrupt or truncated image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


@dataclass(frozen=True)
class Augmentation:
    """Random but reproducible geometric changes for training views (off for evaluation)."""

    flip: bool = True
    rotation_degrees: float = 15.0
    zoom: float = 0.2  # up to 20% closer

    def __post_init__(self) -> None:
        if not 0 <= self.rotation_degrees <= 45:
            raise ValueError("rotation_degrees must be within 0..45")
        if not 0 <= self.zoom < 1:
            raise ValueError("zoom must be within 0..1")


def needed_side(spec: ImageInput, augmentation: Augmentation | None = None) -> int:
    """Short side a decoded image must keep so preprocessing never upsamples a JPEG draft."""
    side = spec.size + spec.crop_padding
    if augmentation:
        side = int(side * (1 + augmentation.zoom) * 1.5)
    return side


def preprocess(
    im: Image.Image, spec: ImageInput, augmentation: Augmentation | None = None, seed: int = 0
) -> np.ndarray:
    """RGB image -> uint8 (S, S, 3): centre crop S/(S+pad)*min(h, w), bicubic resize.

    Normalisation ((x - mean) / std) happens inside the model graph, so the same uint8 frames a
    device camera gives are the model's input, and the host does no float work per pixel.

    With `augmentation`, the crop is zoomed and shifted, flipped and rotated, deterministically
    from `seed` (so a cached view can be recomputed bit for bit).
    """
    size = spec.size
    w, h = im.size
    crop = spec.crop_fraction * min(w, h)
    cx, cy = w / 2.0, h / 2.0
    if augmentation is None:
        box = (cx - crop / 2, cy - crop / 2, cx + crop / 2, cy + crop / 2)
        out = im.resize((size, size), Image.Resampling.BICUBIC, box=box)
    else:
        rng = np.random.default_rng(seed)
        crop /= 1.0 + rng.uniform(0.0, augmentation.zoom)
        slack_x, slack_y = (min(w, h) - crop) / 2, (min(w, h) - crop) / 2
        cx += rng.uniform(-slack_x, slack_x) * 0.5
        cy += rng.uniform(-slack_y, slack_y) * 0.5
        angle = rng.uniform(-augmentation.rotation_degrees, augmentation.rotation_degrees)
        flip = augmentation.flip and rng.random() < 0.5
        # Resize a region large enough that rotating it leaves no empty corners, then crop the middle.
        rad = math.radians(abs(angle))
        grow = math.cos(rad) + math.sin(rad)
        big = math.ceil(size * grow)
        half = min(crop * grow / 2, cx, w - cx, cy, h - cy)  # stay inside the picture
        out = im.resize((big, big), Image.Resampling.BICUBIC, box=(cx - half, cy - half, cx + half, cy + half))
        if angle:
            out = out.rotate(angle, Image.Resampling.BICUBIC)
        off = (big - size) // 2
        out = out.crop((off, off, off + size, off + size))
        if flip:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    arr = np.asarray(out, dtype=np.uint8)
    return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)


def load_for_model(data: bytes, spec: ImageInput) -> np.ndarray:
    """Bytes of an image file -> the clean (unaugmented) uint8 (S, S, 3) input for `spec`."""
    return preprocess(decode_image(data, needed_side(spec)), spec)
