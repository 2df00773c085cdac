"""Decoding every format and pixel layout users have, and preprocessing as the backbone expects."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from edgemaker.backbones.spec import ImageInput
from edgemaker.data.images import MAX_PIXELS, Augmentation, ImageDecodeError, decode_image, preprocess

SPEC = ImageInput(size=64, mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0))


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def gradient(mode: str = "RGB", size=(40, 30)) -> Image.Image:
    arr = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3).astype(np.uint8)
    return Image.fromarray(arr).convert(mode)


@pytest.mark.parametrize("fmt,mode", [
    ("JPEG", "RGB"), ("JPEG", "L"), ("JPEG", "CMYK"), ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "L"),
    ("PNG", "LA"), ("PNG", "P"), ("BMP", "RGB"), ("GIF", "P"), ("WEBP", "RGB"), ("WEBP", "RGBA"),
    ("TIFF", "RGB"), ("TIFF", "CMYK"), ("PNG", "1"),
])
def test_formats_and_modes_decode_to_rgb(fmt, mode):
    im = decode_image(encode(gradient(mode), fmt))
    assert im.mode == "RGB" and im.size == (40, 30)


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    arr = np.full((10, 10), 40000, np.uint16)  # ~61% grey in 16 bit
    im16 = Image.new("I;16", (10, 10))
    im16.frombytes(arr.astype("<u2").tobytes())
    im = decode_image(encode(im16, "PNG"))
    value = np.asarray(im)[0, 0, 0]
    assert abs(int(value) - round(40000 / 257)) <= 1


def test_transparent_pixels_become_white_not_black():
    rgba = Image.new("RGBA", (8, 8), (10, 20, 30, 0))
    assert tuple(np.asarray(decode_image(encode(rgba, "PNG")))[0, 0]) == (255, 255, 255)
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0] * 256)
    pal.info["transparency"] = 0
    assert tuple(np.asarray(decode_image(encode(pal, "PNG", transparency=0)))[0, 0]) == (255, 255, 255)


def test_gif_first_frame_is_used():
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 0, 255)]]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    r, g, b = np.asarray(decode_image(buf.getvalue()))[4, 4]
    assert r > 200 and b < 50


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = decode_image(encode(im, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 40)


def test_tiny_image_is_upsampled_to_the_input_size():
    x = preprocess(decode_image(encode(gradient("RGB", (8, 8)), "PNG")), SPEC)
    assert x.shape == (64, 64, 3) and x.dtype == np.uint8


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("data,reason", [
    (b"", "empty"),
    (b"this is not an image at all", "not an image"),
    (_png_header_only(20000, 20000), "decompression-bomb"),
])
def test_bad_bytes_give_a_reason(data, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        decode_image(data)


def test_truncated_jpeg_is_corrupt():
    data = encode(gradient("RGB", (200, 200)), "JPEG")
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        decode_image(data[: len(data) // 2])


def test_bomb_limit_is_what_the_message_says():
    assert MAX_PIXELS // 1_000_000 == 128


def test_preprocess_centre_crop_matches_the_efficientnet_recipe():
    # A 100x50 image with a red left half: the centre crop (S/(S+32)*50 wide) is mostly not red.
    arr = np.zeros((50, 100, 3), np.uint8)
    arr[:, :50] = (255, 0, 0)
    x = preprocess(Image.fromarray(arr), SPEC)
    red_fraction = (x[..., 0] > 128).mean()
    assert 0.4 < red_fraction < 0.6  # the crop is centred on the boundary
    assert x.shape == (64, 64, 3)


def test_jpeg_draft_keeps_enough_resolution():
    big = gradient("RGB", (2000, 1500))
    im = decode_image(encode(big, "JPEG"), min_side=96)
    assert 96 <= min(im.size) < 1500


def test_augmentation_is_deterministic_per_seed_and_varies_across_seeds():
    im = gradient("RGB", (120, 90))
    aug = Augmentation()
    a = preprocess(im, SPEC, aug, seed=1)
    assert np.array_equal(a, preprocess(im, SPEC, aug, seed=1))
    assert not np.array_equal(a, preprocess(im, SPEC, aug, seed=2))
    assert not np.array_equal(a, preprocess(im, SPEC))


def test_augmentation_rejects_silly_ranges():
    with pytest.raises(ValueError):
        Augmentation(rotation_degrees=90)
    with pytest.raises(ValueError):
        Augmentation(zoom=1.5)
