"""The one limit on decoded bytes every decode path shares (images, sounds, training and prediction).

Counting pixels is not enough: an 11000x11000 16-bit RGBA PNG is under any sensible pixel limit, a
megabyte on disk, and nearly a gigabyte once decoded. What a file will cost is known from its header
(width x height x channels x bytes per channel; samples x channels x 4 for sound), so it is refused
before any byte of it is decoded.
"""

from __future__ import annotations

MAX_DECODED_BYTES = 256 * 1024 * 1024  # one file, decoded: a 64 MP 8-bit RGBA image, a 42 MP 16-bit RGB one


def over_limit(nbytes: int, what: str) -> str | None:
    """The reason `nbytes` of decoded data is refused, or None when it fits."""
    if nbytes <= MAX_DECODED_BYTES:
        return None
    return (f"{what}: {nbytes / 2**20:.0f} MiB once decoded, over the {MAX_DECODED_BYTES / 2**20:.0f} MiB limit "
            "per file (decompression-bomb guard); downscale it")


def bounded(windows, error: type[Exception] = ValueError) -> list:
    """A clip's model windows collected while their bytes stay under the limit (an hour-long sound
    sent for prediction would otherwise sit in memory whole); `error` past it."""
    out, total = [], 0
    for w in windows:
        total += w.nbytes
        reason = over_limit(total, "the sound's model windows")
        if reason:
            raise error(reason.replace("; downscale it", "; cut it into shorter clips"))
        out.append(w)
    return out
