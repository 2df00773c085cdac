"""Log-mel front ends, written twice from one spec: numpy (offline: reports, the front-end-less
export, tests) and PyTorch (exported into the ONNX graph, so a device feeds raw audio).

The STFT in the graph is a strided 1-D convolution whose weights are the windowed DFT basis, so it
runs on any runtime that has Conv; the mel projection is a MatMul; the log is elementwise.
"""

from __future__ import annotations

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
    log: str = "ln_offset"  # "ln_offset": ln(mel + offset); "log10_scaled": log10(mel * 1e4 + 1) / scale
    log_offset: float = 0.001
    log_scale: float = 1.0
    peak_normalize: bool = False  # divide each window by its peak amplitude first

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
        edges = mel_to_hz(np.linspace(hz_to_mel(self.fmin), hz_to_mel(self.fmax), self.n_mels + 2))
        lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
        up = (bins[None] - lower) / np.maximum(centre - lower, 1e-9)
        down = (upper - bins[None]) / np.maximum(upper - centre, 1e-9)
        weights = np.maximum(0.0, np.minimum(up, down))  # (n_mels, bins)
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
        return out[0] if single else out

    def torch_module(self):
        """The same computation as a torch module: (N, samples) -> (N, frames, n_mels)."""
        import torch

        spec = self
        k = np.arange(self.n_fft // 2 + 1)[:, None]
        t = np.arange(self.win_length)[None]
        angle = 2 * np.pi * k * t / self.n_fft
        basis = np.concatenate([np.cos(angle), -np.sin(angle)]) * self.window[None]

        class LogMel(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.register_buffer("dft", torch.tensor(basis[:, None, :], dtype=torch.float32))
                self.register_buffer("mel", torch.tensor(spec.mel_matrix, dtype=torch.float32))
                self.bins = spec.n_fft // 2 + 1

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                if spec.peak_normalize:
                    x = x / torch.clamp(x.abs().amax(dim=1, keepdim=True), min=1e-8)
                z = torch.nn.functional.conv1d(x.unsqueeze(1), self.dft, stride=spec.hop_length)
                re, im = z[:, : self.bins], z[:, self.bins :]
                power = re * re + im * im
                mag = torch.sqrt(power) if spec.power == 1.0 else power
                mel = torch.matmul(mag.transpose(1, 2), self.mel)  # (N, frames, n_mels)
                if spec.log == "ln_offset":
                    return torch.log(mel + spec.log_offset)
                return torch.log10(mel * 1e4 + 1.0) / spec.log_scale

        return LogMel().eval()


# The seed paper's (YAMNet's) front end: 16 kHz, 25 ms / 10 ms STFT, 64 mels over 125-7500 Hz, log.
YAMNET_LOGMEL = LogMelSpec(sample_rate=16000, win_length=400, hop_length=160, n_fft=512, n_mels=64,
                           fmin=125.0, fmax=7500.0)
# aisfx's front end: 44.1 kHz, 2048 / 1024 STFT power, 96 HTK mels (L1-normalised), log10(1e4 x + 1) / max.
AISFX_LOGMEL = LogMelSpec(sample_rate=44100, win_length=2048, hop_length=1024, n_fft=2048, n_mels=96,
                          fmin=0.0, fmax=22050.0, power=2.0, mel_norm="l1", log="log10_scaled",
                          log_scale=9.457798957824707, peak_normalize=True)
