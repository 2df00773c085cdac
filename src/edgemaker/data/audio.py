"""Sound files -> mono windows at the backbone's rate, streamed so a 10-minute clip never sits in
memory whole: decode in blocks (soundfile), downmix, resample (soxr), drop silent 10 ms frames,
cut overlapping windows (padding short clips), optionally augment each window.
"""

from __future__ import annotations

import io
import re
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backbones.spec import AudioInput

BLOCK_SECONDS = 5.0
SILENCE_FRAME_SECONDS = 0.01
# Per-file guards (like images' 128 MP limit), so a hostile header cannot cost unbounded time or memory:
MIN_RATE, MAX_RATE = 1_000, 768_000  # Hz; outside it the header is broken, or resampling would be absurd
MAX_SECONDS = 3600.0  # decoded length of one clip; longer recordings are cut into clips first
MIN_SECONDS = 0.001  # shorter resamples to nothing: no window to classify
MAX_AMPLITUDE = 1000.0  # float samples 60 dB over full scale are damage, not sound (their log-mel overflows)
MAX_BLOCK_SAMPLES = 1 << 22  # one decoded block over all channels: 16 MB of float32


class AudioDecodeError(ValueError):
    """The file is not a sound we can use; the message is the reason shown to the user."""


@dataclass(frozen=True)
class SilenceOptions:
    """Frames (10 ms) quieter than `threshold_db` dBFS are removed: silence carries no class
    and would dilute a clip's mean over its windows.

    A clip that is silent throughout is kept whole (and reported), never dropped silently.
    """

    enabled: bool = True
    threshold_db: float = -60.0

    def __post_init__(self) -> None:
        if not -120 <= self.threshold_db <= 0:
            raise ValueError("silence threshold must be within -120..0 dBFS")


@dataclass(frozen=True)
class AudioAugmentation:
    """Training-time changes per window: gain, background noise at a random SNR, time shift."""

    gain_db: float = 6.0
    noise_snr_db: tuple[float, float] = (10.0, 30.0)
    noise_probability: float = 0.5
    max_shift_seconds: float = 0.25

    def __post_init__(self) -> None:
        if self.gain_db < 0 or self.max_shift_seconds < 0 or not 0 <= self.noise_probability <= 1:
            raise ValueError("gain_db, max_shift_seconds >= 0 and noise_probability within 0..1")
        if self.noise_snr_db[0] > self.noise_snr_db[1]:
            raise ValueError("noise_snr_db must be (low, high)")


def _open(source: Path | bytes):
    import soundfile as sf

    from .remote import RemotePath

    try:
        if isinstance(source, RemotePath):  # a clip in an fsspec store: its bytes, read once
            source = source.read_bytes()
        return sf.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else str(source))
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError/TypeError for bad input
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        # libsndfile's "Error opening <_io.BytesIO object at 0x...>: Format not recognised." -> the reason only
        text = re.sub(r"^Error opening .*?: ", "", text)
        raise AudioDecodeError(f"not a readable sound file ({text})") from None


def _check_header(f) -> None:
    """Refuse what no clip should declare, before decoding anything."""
    if f.frames <= 0:
        raise AudioDecodeError("zero-length sound (no samples)")
    if f.samplerate <= 0 or f.channels <= 0:
        raise AudioDecodeError("invalid header (sample rate or channel count)")
    if not MIN_RATE <= f.samplerate <= MAX_RATE:
        raise AudioDecodeError(f"sample rate {f.samplerate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz (a damaged header?)")
    seconds = f.frames / f.samplerate
    if seconds > MAX_SECONDS:
        raise AudioDecodeError(f"{seconds / 60:.0f} minutes long, over the {MAX_SECONDS / 60:.0f}-minute limit "
                               "per clip: cut it into shorter clips")
    if seconds < MIN_SECONDS:
        raise AudioDecodeError(f"shorter than {MIN_SECONDS * 1000:.0f} ms ({f.frames} samples at {f.samplerate} Hz): "
                               "too short to classify")


def probe_audio(source: Path | bytes) -> dict:
    """Header facts, without decoding the samples."""
    with _open(source) as f:
        info = {"sample_rate": f.samplerate, "channels": f.channels, "frames": f.frames,
                "format": f.format, "subtype": f.subtype}
        _check_header(f)
    info["duration_s"] = info["frames"] / info["sample_rate"]
    return info


def stream_mono(source: Path | bytes, sample_rate: int, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Yield float32 mono blocks resampled to `sample_rate`; NaN/inf samples are an error."""
    import soxr

    with _open(source) as f:
        _check_header(f)
        resampler = None if f.samplerate == sample_rate else soxr.ResampleStream(
            f.samplerate, sample_rate, 1, dtype="float32", quality="HQ")
        block = max(1, min(max(1024, int(block_seconds * f.samplerate)), MAX_BLOCK_SAMPLES // f.channels))
        got = 0
        try:
            for chunk in f.blocks(blocksize=block, dtype="float32", always_2d=True):
                if not np.isfinite(chunk).all():
                    raise AudioDecodeError("contains NaN or infinite samples")
                peak = float(np.abs(chunk).max(initial=0.0))
                if peak > MAX_AMPLITUDE:
                    raise AudioDecodeError(f"samples far beyond full scale (peak {peak:.3g}; float samples "
                                           "should lie within -1..1)")
                got += len(chunk)
                if got > MAX_SECONDS * f.samplerate:  # more data than the header said
                    raise AudioDecodeError(f"over the {MAX_SECONDS / 60:.0f}-minute limit per clip: "
                                           "cut it into shorter clips")
                mono = chunk.mean(axis=1, dtype=np.float32) if chunk.shape[1] > 1 else chunk[:, 0]
                out = resampler.resample_chunk(mono) if resampler else mono
                if len(out):
                    yield np.ascontiguousarray(out, np.float32)
        except AudioDecodeError:
            raise
        except Exception as exc:  # a damaged body after a good header
            raise AudioDecodeError(f"corrupt sound data ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        if got == 0:
            raise AudioDecodeError("zero-length sound (no samples)")
        if resampler:
            tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            if len(tail):
                yield np.ascontiguousarray(tail, np.float32)


def drop_silence(blocks: Iterator[np.ndarray], sample_rate: int, threshold_db: float,
                 kept: list[int] | None = None) -> Iterator[np.ndarray]:
    """Remove 10 ms frames whose RMS is below `threshold_db` dBFS. `kept` counts kept samples."""
    frame = max(1, int(round(SILENCE_FRAME_SECONDS * sample_rate)))
    threshold = 10.0 ** (threshold_db / 20.0)
    carry = np.zeros(0, np.float32)
    for block in blocks:
        data = np.concatenate([carry, block]) if len(carry) else block
        n = len(data) // frame * frame
        carry = data[n:]
        if n:
            frames = data[:n].reshape(-1, frame)
            loud = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)) >= threshold
            if loud.any():
                out = frames[loud].reshape(-1)
                if kept is not None:
                    kept[0] += len(out)
                yield out
    if len(carry) and np.sqrt((carry.astype(np.float64) ** 2).mean()) >= threshold:
        if kept is not None:
            kept[0] += len(carry)
        yield carry


def cut_windows(blocks: Iterator[np.ndarray], window: int, hop: int) -> Iterator[np.ndarray]:
    """Overlapping windows from a stream; a clip shorter than one window is zero-padded to one;
    a trailing part is padded into a last window when it holds at least half a hop of sound."""
    buf = np.zeros(0, np.float32)
    emitted = False
    for block in blocks:
        buf = np.concatenate([buf, block]) if len(buf) else block
        while len(buf) >= window:
            yield buf[:window].copy()
            emitted = True
            buf = buf[hop:]
    leftover = len(buf) - (window - hop) if emitted else len(buf)
    if not emitted and len(buf):
        yield np.pad(buf, (0, window - len(buf)))
    elif emitted and leftover >= hop // 2:
        yield np.pad(buf, (0, window - len(buf)))


def augment_window(x: np.ndarray, aug: AudioAugmentation, rng: np.random.Generator) -> np.ndarray:
    y = x * np.float32(10.0 ** (rng.uniform(-aug.gain_db, aug.gain_db) / 20.0))
    if rng.random() < aug.noise_probability:
        rms = float(np.sqrt(np.mean(y.astype(np.float64) ** 2))) or 1e-4
        snr = rng.uniform(*aug.noise_snr_db)
        y = y + rng.normal(0.0, rms / 10.0 ** (snr / 20.0), len(y)).astype(np.float32)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def clip_windows(source: Path | bytes, spec: AudioInput, silence: SilenceOptions = SilenceOptions(),
                 augmentation: AudioAugmentation | None = None, seed: int = 0) -> Iterator[np.ndarray]:
    """Stream the windows of one clip, as the model sees them (augmented when asked)."""
    stream = stream_mono(source, spec.sample_rate)
    if silence.enabled:
        first, rest = _first_nonempty(drop_silence(stream, spec.sample_rate, silence.threshold_db))
        # Silent throughout: keep the clip as it is rather than lose it (validation reports it).
        stream = _prepend(first, rest) if first is not None else stream_mono(source, spec.sample_rate)
    rng = np.random.default_rng(seed) if augmentation else None
    if augmentation and rng is not None:
        shift = int(rng.uniform(0, augmentation.max_shift_seconds) * spec.sample_rate)
        if shift:
            stream = _prepend(np.zeros(shift, np.float32), stream)
    for w in cut_windows(stream, spec.window_samples, spec.hop_samples):
        yield augment_window(w, augmentation, rng) if augmentation and rng is not None else w


def _first_nonempty(stream: Iterator[np.ndarray]) -> tuple[np.ndarray | None, Iterator[np.ndarray]]:
    for block in stream:
        if len(block):
            return block, stream
    return None, iter(())


def _prepend(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def check_audio(source: Path | bytes) -> dict:
    """Decode the whole file once (streamed, at its own rate): header facts plus the level of its
    loudest 10 ms frame in dBFS, so any silence threshold can be judged later without decoding."""
    info = probe_audio(source)
    rate = info["sample_rate"]
    frame = max(1, int(round(SILENCE_FRAME_SECONDS * rate)))
    loudest = 0.0
    carry = np.zeros(0, np.float32)
    for block in stream_mono(source, rate):
        data = np.concatenate([carry, block]) if len(carry) else block
        n = len(data) // frame * frame
        carry = data[n:]
        if n:
            loudest = max(loudest, float(np.sqrt((data[:n].reshape(-1, frame).astype(np.float64) ** 2).mean(1)).max()))
    if len(carry):
        loudest = max(loudest, float(np.sqrt((carry.astype(np.float64) ** 2).mean())))
    info["loudest_db"] = round(20 * math.log10(loudest), 2) if loudest > 0 else -200.0
    return info
