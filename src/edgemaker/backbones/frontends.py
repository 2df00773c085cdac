"""Log-mel front ends, written twice from one spec: numpy (offline: reports, the front-end-less
export, tests) and PyTorch (exported into the ONNX graph, so a device feeds raw audio).

In the graph, framing is slicing, the DFT is two small matmuls (factorised), the mel projection is a
MatMul and the log is elementwise: plain ops every runtime has.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class LogMelSpec:
    sample_rate: int
    win_length: int  # samples per STFT frame
    hop_length: int
    n_fft: int
    n_mels: int
    fmin: float
    fmax: float
    power: float = 1.0  # 1: magnitude (YAMNet); 2: power (aisfx)
    mel_norm: str = "none"  # "none" or "l1": each filter sums to 1 (librosa norm=1)
    # "hz": triangles linear in Hz (librosa's htk=True); "mel": linear in mel with the DC bin zeroed,
    # as tf.signal.linear_to_mel_weight_matrix (YAMNet's own graph: its int8 matrix matches this to rounding)
    mel_triangles: str = "hz"
    log: str = "ln_offset"  # "ln_offset": ln(mel + offset); "log10_scaled": log10(mel * 1e4 + 1) / scale
    log_offset: float = 0.001
    log_scale: float = 1.0
    peak_normalize: bool = False  # divide each window by its peak amplitude first
    standardise: bool = False  # each window's patch centred, divided by its spread, halved (standardise_patch)

    def frames(self, samples: int) -> int:
        return 1 + (samples - self.win_length) // self.hop_length

    def samples_for(self, frames: int) -> int:
        return self.win_length + (frames - 1) * self.hop_length

    @cached_property
    def window(self) -> np.ndarray:
        n = np.arange(self.win_length)
        return 0.5 - 0.5 * np.cos(2 * np.pi * n / self.win_length)  # periodic Hann

    @cached_property
    def mel_matrix(self) -> np.ndarray:
        """(n_fft // 2 + 1, n_mels) triangular filters on the HTK mel scale."""

        def hz_to_mel(f):
            return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)

        def mel_to_hz(m):
            return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)

        bins = np.linspace(0, self.sample_rate / 2, self.n_fft // 2 + 1)
        edges_mel = np.linspace(hz_to_mel(self.fmin), hz_to_mel(self.fmax), self.n_mels + 2)
        if self.mel_triangles == "mel":
            bins, edges = hz_to_mel(bins), edges_mel
        else:
            edges = mel_to_hz(edges_mel)
        lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
        up = (bins[None] - lower) / np.maximum(centre - lower, 1e-9)
        down = (upper - bins[None]) / np.maximum(upper - centre, 1e-9)
        weights = np.maximum(0.0, np.minimum(up, down))  # (n_mels, bins)
        if self.mel_triangles == "mel":
            weights[:, 0] = 0.0
        if self.mel_norm == "l1":
            weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
        return weights.T

    def _log(self, mel: np.ndarray) -> np.ndarray:
        if self.log == "ln_offset":
            return np.log(mel + self.log_offset)
        return np.log10(mel * 1e4 + 1.0) / self.log_scale

    def compute(self, window: np.ndarray) -> np.ndarray:
        """(samples,) or (N, samples) float -> (frames, n_mels) or (N, frames, n_mels) float32."""
        x = np.asarray(window, np.float64)
        single = x.ndim == 1
        x = x[None] if single else x
        if self.peak_normalize:
            peak = np.abs(x).max(axis=1, keepdims=True)
            x = x / np.maximum(peak, 1e-8)
        n_frames = self.frames(x.shape[1])
        idx = np.arange(self.win_length)[None] + self.hop_length * np.arange(n_frames)[:, None]
        frames = x[:, idx] * self.window  # (N, frames, win)
        spec = np.abs(np.fft.rfft(frames, n=self.n_fft, axis=-1)) ** self.power
        out = self._log(spec @ self.mel_matrix).astype(np.float32)
        if self.standardise:
            out = standardise_patch(out)
        return out[0] if single else out

    def torch_module(self, double_precision: bool = True):
        """The same computation as a torch module: (N, samples) -> (N, frames, n_mels).

        Framing is slicing (no weights), and the DFT is factorised in two stages (Cooley-Tukey,
        n_fft = N1 * N2): two small complex matmuls and a twiddle, instead of an n_fft x n_fft basis.
        That keeps the graph small (kilobytes, not megabytes) and ~100x cheaper than a dense DFT.
        The DFT runs in float64 by default: in float32 its rounding (~1e-7 of a loud frame) becomes
        up to 2e-3 of log-mel in near-silent bins, because ln(mel + 0.001) magnifies small values.
        """
        import math

        import torch

        spec = self
        n = self.n_fft
        if n & (n - 1):
            raise ValueError("n_fft must be a power of two")
        n1 = 2 ** (int(math.log2(n)) // 2)
        n2 = n // n1
        g = math.gcd(self.win_length, self.hop_length)
        step, parts = self.hop_length // g, self.win_length // g
        bins = n // 2 + 1
        # Stage 1 over n1 (rows), twiddle, stage 2 over n2; outputs k = k1 + n1 * k2.
        w1 = np.exp(-2j * np.pi * np.outer(np.arange(n1), np.arange(n1)) / n1)  # (k1, m1)
        tw = np.exp(-2j * np.pi * np.outer(np.arange(n1), np.arange(n2)) / n)  # (k1, m2)
        w2 = np.exp(-2j * np.pi * np.outer(np.arange(n2), np.arange(n2)) / n2)  # (m2, k2)
        order = (np.arange(n1)[:, None] + n1 * np.arange(n2)[None]).reshape(-1)  # (k1, k2) flattened -> k
        keep = np.argsort(order)[:bins]  # positions of k = 0 .. n/2 in the flattened (k1, k2) grid

        dft_type = torch.float64 if double_precision else torch.float32

        def t(a, dtype=dft_type) -> torch.Tensor:
            return torch.tensor(np.asarray(a), dtype=dtype)

        class LogMel(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.register_buffer("window", t(spec.window))
                self.register_buffer("w1r", t(w1.real))
                self.register_buffer("w1i", t(w1.imag))
                self.register_buffer("twr", t(tw.real))
                self.register_buffer("twi", t(tw.imag))
                self.register_buffer("w2r", t(w2.real))
                self.register_buffer("w2i", t(w2.imag))
                self.register_buffer("keep", torch.tensor(keep, dtype=torch.int64))
                self.register_buffer("mel", t(spec.mel_matrix, torch.float32))

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                if spec.peak_normalize:
                    x = x / torch.clamp(x.abs().amax(dim=1, keepdim=True), min=1e-8)
                batch = x.shape[0]
                frames = (x.shape[1] - spec.win_length) // spec.hop_length + 1
                blocks = x[:, : (x.shape[1] // g) * g].reshape(batch, -1, g)
                span = step * (frames - 1) + 1
                f = torch.cat([blocks[:, j : j + span : step] for j in range(parts)], dim=2).to(dft_type) * self.window
                if spec.win_length < n:
                    f = torch.nn.functional.pad(f, (0, n - spec.win_length))
                a = f.reshape(batch, frames, n1, n2)  # sample index m = m1 * n2 + m2
                ar = torch.matmul(self.w1r, a)  # (B, F, k1, m2)
                ai = torch.matmul(self.w1i, a)
                br = ar * self.twr - ai * self.twi
                bi = ar * self.twi + ai * self.twr
                xr = torch.matmul(br, self.w2r) - torch.matmul(bi, self.w2i)  # (B, F, k1, k2)
                xi = torch.matmul(br, self.w2i) + torch.matmul(bi, self.w2r)
                xr = xr.reshape(batch, frames, n).index_select(2, self.keep)
                xi = xi.reshape(batch, frames, n).index_select(2, self.keep)
                power = xr * xr + xi * xi
                mag = (torch.sqrt(power) if spec.power == 1.0 else power).to(torch.float32)
                mel = torch.matmul(mag, self.mel)  # (N, frames, n_mels)
                if spec.log == "ln_offset":
                    out = torch.log(mel + spec.log_offset)
                else:
                    out = torch.log10(mel * 1e4 + 1.0) / spec.log_scale
                return standardise_patch(out) if spec.standardise else out

        return LogMel().eval()


MAD_TO_STD = float(np.sqrt(np.pi / 2))  # std / mean absolute deviation of a normal distribution
SPREAD_FLOOR = 0.1


def standardise_patch(mel):
    """(N, frames, mels), numpy or torch -> each patch centred, divided by its spread, halved.

    The spread is the mean absolute deviation x sqrt(pi/2) (the std for normal data; on ESC-10 the
    two differ by 0.89-1.13x), floored at 0.1 (real patches sit at 0.47-3.3): a silent, constant
    patch would otherwise divide by zero. It is part of the front end, not of the int8 network: a
    per-patch DIV by a data-dependent int8 value rounds differently in TFLite Micro and LiteRT (and
    a std's SQRT has no int8 kernel in TFLite Micro at all), while a standardised input has a fixed
    range that int8 holds well."""
    mean = mel.mean(axis=(1, 2), keepdims=True) if isinstance(mel, np.ndarray) else mel.mean(dim=(1, 2), keepdim=True)
    centred = mel - mean
    if isinstance(mel, np.ndarray):
        spread = np.maximum(np.abs(centred).mean(axis=(1, 2), keepdims=True) * MAD_TO_STD, SPREAD_FLOOR)
        return (centred / spread * 0.5).astype(np.float32)
    spread = (centred.abs().mean(dim=(1, 2), keepdim=True) * MAD_TO_STD).clamp(min=SPREAD_FLOOR)
    return centred / spread * 0.5


# YAMNet's front end (the common one for small sound classifiers): 16 kHz, 25 ms / 10 ms STFT, 64 mels over
# 125-7500 Hz, log, with TensorFlow's mel filters (tests/test_yamnet_frontend.py checks it against YAMNet's TFLite graph).
YAMNET_LOGMEL = LogMelSpec(sample_rate=16000, win_length=400, hop_length=160, n_fft=512, n_mels=64,
                           fmin=125.0, fmax=7500.0, mel_triangles="mel")
# aisfx's front end: 44.1 kHz, 2048 / 1024 STFT power, 96 HTK mels (L1-normalised), log10(1e4 x + 1) / max.
AISFX_LOGMEL = LogMelSpec(sample_rate=44100, win_length=2048, hop_length=1024, n_fft=2048, n_mels=96,
                          fmin=0.0, fmax=22050.0, power=2.0, mel_norm="l1", log="log10_scaled",
                          log_scale=9.457798957824707, peak_normalize=True)
# small_cnn_mel's front end: aisfx's recipe (peak-normalised window, power spectrum, L1 mel filters,
# log10(1e4 x + 1) / scale: no SQRT, ops aisfx's int8 file already runs in TFLite Micro) at a
# microcontroller's scale: 16 kHz, 32 / 16 ms STFT, 40 bands (a 10 kB mel matrix in int8, not 98 kB).
SMALL_LOGMEL = LogMelSpec(sample_rate=16000, win_length=512, hop_length=256, n_fft=512, n_mels=40,
                          fmin=50.0, fmax=8000.0, power=2.0, mel_norm="l1", log="log10_scaled",
                          log_scale=8.0, peak_normalize=True)
# EfficientNet-Lite0 on log-mel: the same, each 0.96 s patch standardised (preprocessing v5).
# Its filters stay linear in Hz: its cached embeddings and measured accuracy were made with them.
LITE0_MEL_LOGMEL = dataclasses.replace(YAMNET_LOGMEL, standardise=True, mel_triangles="hz")
