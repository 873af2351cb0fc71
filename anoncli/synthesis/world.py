"""WORLD resynthesis (pyworld): the original's F0 and aperiodicity, a changed envelope.

The original wave is analysed (Harvest or DIO F0, CheapTrick envelope, D4C
aperiodicity); the mel-domain change is applied as a gain on the spectral
envelope, interpolated from our STFT frames onto WORLD's 5 ms frames. F0 can
be moved by a factor (`f0_factor`), which the gain on an STFT cannot do.
"""

from __future__ import annotations

import numpy as np
import pyworld
import torch

from anoncli.synthesis.base import Vocoder, fit_length, mel_gain_to_linear

FRAME_PERIOD_MS = 5.0


def interp_axis(values: np.ndarray, x: np.ndarray, x_new: np.ndarray, axis: int) -> np.ndarray:
    """np.interp along one axis of a 2-D array, vectorised (held constant beyond the ends)."""
    if len(x) == 1:
        return np.repeat(np.take(values, [0], axis=axis), len(x_new), axis=axis)
    x_new = np.clip(x_new, x[0], x[-1])
    right = np.clip(np.searchsorted(x, x_new, side="right"), 1, len(x) - 1)
    left = right - 1
    weight = (x_new - x[left]) / (x[right] - x[left])
    shape = [1, 1]
    shape[axis] = -1
    weight = weight.reshape(shape)
    return np.take(values, left, axis=axis) * (1 - weight) + np.take(values, right, axis=axis) * weight


class WorldVocoder(Vocoder):
    """Vocoder `world`: WORLD (Morise et al., 2016) resynthesis with the original F0 (times `f0_factor`) and aperiodicity.

    The mel change becomes a gain on the CheapTrick envelope. Raises ValueError for an
    `f0_method` other than "harvest" or "dio".
    """

    name = "world"
    needs_original = True

    def __init__(
        self,
        sample_rate: int,
        device: str = "cpu",
        checkpoint: str | None = None,
        f0_factor: float = 1.0,
        f0_method: str = "harvest",
        **options,
    ):
        if f0_method not in ("harvest", "dio"):
            raise ValueError(f"unknown F0 method {f0_method!r} (harvest or dio)")
        super().__init__(sample_rate, "cpu", checkpoint, f0_factor=float(f0_factor), f0_method=f0_method, **options)
        self.f0_factor = float(f0_factor)
        self.f0_method = f0_method

    def analyse(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """WORLD analysis of a mono wave (T,) at 5 ms frames: F0 (frames,) in Hz, envelope and aperiodicity (frames, bins)."""
        x = wave.astype(np.float64)
        if self.f0_method == "harvest":
            f0, times = pyworld.harvest(x, self.sample_rate, frame_period=FRAME_PERIOD_MS)
        else:
            f0, times = pyworld.dio(x, self.sample_rate, frame_period=FRAME_PERIOD_MS)
            f0 = pyworld.stonemask(x, f0, times, self.sample_rate)
        envelope = pyworld.cheaptrick(x, f0, times, self.sample_rate)
        aperiodicity = pyworld.d4c(x, f0, times, self.sample_rate)
        return f0, envelope, aperiodicity

    def envelope_gain(
        self, new_logmel: torch.Tensor, original_wave: torch.Tensor, world_frames: int, world_bins: int
    ) -> np.ndarray:
        """(world_frames, world_bins) power gain from the mel change."""
        magnitude = self.mel.magnitude_stft(original_wave.unsqueeze(0)).squeeze(0)
        gain = mel_gain_to_linear(self.mel, magnitude, new_logmel.to(torch.float32)).numpy()  # (n_freqs, F)
        log_gain = np.log(gain)
        if np.allclose(log_gain, 0.0):
            return np.ones((world_frames, world_bins))
        hop_s = self.mel.hop_length / self.sample_rate
        mel_times = (np.arange(log_gain.shape[1]) + 0.5) * hop_s
        world_times = np.arange(world_frames) * FRAME_PERIOD_MS / 1000.0
        stft_freqs = np.linspace(0.0, self.sample_rate / 2.0, log_gain.shape[0])
        world_freqs = np.linspace(0.0, self.sample_rate / 2.0, world_bins)
        over_time = interp_axis(log_gain, mel_times, world_times, axis=1)  # (n_freqs, Tw)
        over_both = interp_axis(over_time, stft_freqs, world_freqs, axis=0)  # (bins, Tw)
        return np.ascontiguousarray(np.exp(2.0 * over_both.T))  # WORLD's envelope is a power spectrum

    @torch.no_grad()
    def synthesize(self, new_logmel: torch.Tensor, original_wave: torch.Tensor) -> torch.Tensor:
        self.check_shapes(new_logmel, original_wave)
        wave = original_wave.detach().to("cpu", torch.float32)
        length = wave.shape[-1]
        f0, envelope, aperiodicity = self.analyse(wave.numpy())
        envelope = envelope * self.envelope_gain(new_logmel.cpu(), wave, envelope.shape[0], envelope.shape[1])
        out = pyworld.synthesize(f0 * self.f0_factor, envelope, aperiodicity, self.sample_rate, FRAME_PERIOD_MS)
        return fit_length(torch.from_numpy(out.astype(np.float32)), length)
