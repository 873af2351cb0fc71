"""Source-filter analysis and resynthesis (WORLD, pyworld) with the pitch, energy and envelope all movable.

Analysis (`analyse`): DIO + StoneMask F0 (Morise et al., IEICE 2016), 10 ms
frames, 60-600 Hz; CheapTrick spectral envelope and D4C aperiodicity
(FFT 1024 at 16 kHz: 513 bins). The envelope is also summarised as an
80-band log10 magnitude mel (`envelope_logmel`, the filterbank of
`anoncli.synthesis.mel.LogMel` at the same rate, whose STFT bins are WORLD's
bins at 16 kHz) on the same 10 ms frames: the representation the learned
generators change. `frame_energy_db` is each frame's envelope energy (dB).

Resynthesis (`resynthesize`) applies, in this order:
1. a frequency warp of envelope and aperiodicity by `warp` (>1 moves formants up);
2. a per-band, per-frame log10 gain on the warped envelope (the generator's
   change of the envelope's log-mel plus the energy contour change, both in
   log10 magnitude), spread onto WORLD's bins with the filterbank weights;
3. the new F0 contour (Hz, 0 = unvoiced);
then `pyworld.synthesize`. The output has the input's length. An F0 of 0
on every frame resynthesises the utterance unvoiced (whispered): WORLD's
noise excitation through the changed envelope and aperiodicity.

Speed (one core, 16 kHz speech, measured with pyworld 0.3): DIO 270x,
StoneMask 1400x, CheapTrick 290x, D4C 175x, synthesis 96x real time: about
40x real time per core for analysis plus synthesis.

`SourceFilterVocoder` (registered as vocoder `source_filter`) offers the same
path behind the common vocoder interface (a changed STFT log-mel in, the
original F0 kept unless `f0_factor` is given); the learned methods call
`analyse`/`resynthesize` directly so that their prosody heads set F0 and energy.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyworld
import torch

from anoncli.synthesis.base import Vocoder, fit_length, mel_gain_to_linear
from anoncli.synthesis.mel import LogMel
from anoncli.synthesis.world import interp_axis

FRAME_PERIOD_MS = 10.0
F0_FLOOR_HZ = 60.0
F0_CEIL_HZ = 600.0
# WORLD's envelope is a power spectrum on another scale than our STFT; this factor puts the
# envelope log-mel's loudest frames at the STFT log-mel's level (measured on RAVDESS speech).
ENVELOPE_SCALE = 20.0
# Frames more than this many dB below the loudest count as silence for energy statistics.
ACTIVE_RANGE_DB = 40.0


@dataclass
class WorldFeatures:
    """WORLD parameters of one utterance at 10 ms frames (T frames, B = fft_size/2 + 1 bins)."""

    f0: np.ndarray  # (T,) Hz, 0 where unvoiced
    envelope: np.ndarray  # (T, B) power spectral envelope
    aperiodicity: np.ndarray  # (T, B) in [0, 1]
    sample_rate: int
    length: int  # samples of the analysed wave


@lru_cache(maxsize=4)
def envelope_mel(sample_rate: int) -> LogMel:
    """The LogMel whose filterbank summarises the envelope (80 bands over WORLD's bins)."""
    return LogMel(sample_rate=sample_rate)


def fft_size(sample_rate: int) -> int:
    """WORLD's CheapTrick FFT size at `sample_rate` Hz for the F0 floor (envelopes have fft_size // 2 + 1 bins)."""
    return pyworld.get_cheaptrick_fft_size(sample_rate, F0_FLOOR_HZ)


def min_samples(sample_rate: int) -> int:
    """The shortest wave (samples at `sample_rate`) worth analysing: one 10 ms frame period. WORLD returns
    parameters for anything shorter too, but they describe no frame of speech."""
    return int(round(FRAME_PERIOD_MS / 1000.0 * sample_rate))


def analyse(wave: np.ndarray | torch.Tensor, sample_rate: int, aperiodicity: bool = True) -> WorldFeatures:
    """WORLD analysis of a mono wave (T,) float in [-1, 1]; `aperiodicity=False` skips D4C (training features)."""
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().cpu().numpy()
    x = np.ascontiguousarray(wave, dtype=np.float64)
    size = max(fft_size(sample_rate), envelope_mel(sample_rate).n_fft)
    f0, times = pyworld.dio(x, sample_rate, f0_floor=F0_FLOOR_HZ, f0_ceil=F0_CEIL_HZ, frame_period=FRAME_PERIOD_MS)
    f0 = pyworld.stonemask(x, f0, times, sample_rate)
    envelope = pyworld.cheaptrick(x, f0, times, sample_rate, f0_floor=F0_FLOOR_HZ, fft_size=size)
    ap = pyworld.d4c(x, f0, times, sample_rate, fft_size=size) if aperiodicity else np.zeros((0, 0))
    return WorldFeatures(f0, envelope, ap, int(sample_rate), len(x))


def envelope_logmel(envelope: np.ndarray, sample_rate: int) -> torch.Tensor:
    """(T, B) power envelope -> (80, T) float32 log10 magnitude mel (LogMel's convention, scaled by ENVELOPE_SCALE)."""
    mel = envelope_mel(sample_rate)
    magnitude = torch.from_numpy(np.sqrt(envelope).T.astype(np.float32)) * ENVELOPE_SCALE
    return mel.mel_from_magnitude(magnitude.unsqueeze(0)).squeeze(0)


def frame_energy_db(envelope: np.ndarray) -> np.ndarray:
    """(T, B) power envelope -> (T,) frame energy in dB (mean power over bins)."""
    return (10.0 * np.log10(envelope.mean(axis=1) + 1e-20)).astype(np.float32)


def warp_bins(values: np.ndarray, warp: float) -> np.ndarray:
    """Warp (T, B) spectra along frequency: out(f) = in(f / warp), held at the last bin beyond the end."""
    if abs(warp - 1.0) < 1e-6:
        return values
    bins = np.arange(values.shape[1], dtype=np.float64)
    return np.ascontiguousarray(interp_axis(values, bins, bins / warp, axis=1))


def resynthesize(
    features: WorldFeatures,
    f0: np.ndarray | None = None,
    band_log10_gain: torch.Tensor | None = None,
    warp: float = 1.0,
) -> torch.Tensor:
    """Wave (length,) float32 from WORLD features with a new F0 (T,) Hz, a (80, T) log10 band gain and a warp."""
    envelope = warp_bins(features.envelope, warp)
    ap = warp_bins(features.aperiodicity, warp) if features.aperiodicity.size else None
    if ap is None:
        raise ValueError("resynthesis needs the aperiodicity (analyse(..., aperiodicity=True))")
    if band_log10_gain is not None:
        mel = envelope_mel(features.sample_rate)
        magnitude = torch.from_numpy(np.sqrt(envelope).T.astype(np.float32)) * ENVELOPE_SCALE
        old = mel.mel_from_magnitude(magnitude.unsqueeze(0)).squeeze(0)
        gain = mel_gain_to_linear(mel, magnitude, old + band_log10_gain.to(old)).numpy()  # (B, T) magnitude
        envelope = np.ascontiguousarray(envelope * (gain.T.astype(np.float64) ** 2))
    f0 = features.f0 if f0 is None else np.clip(np.asarray(f0, dtype=np.float64), 0.0, None)
    out = pyworld.synthesize(
        np.ascontiguousarray(f0, dtype=np.float64),
        envelope,
        np.ascontiguousarray(ap),
        features.sample_rate,
        FRAME_PERIOD_MS,
    )
    peak = float(np.abs(out).max()) if out.size else 0.0
    if peak > 0.999:  # WORLD can overshoot after a large gain; keep the file valid
        out = out * (0.999 / peak)
    return fit_length(torch.from_numpy(out.astype(np.float32)), features.length)


class SourceFilterVocoder(Vocoder):
    """Vocoder `source_filter`: WORLD at 10 ms frames with DIO + StoneMask, the mel change on the envelope.

    `synthesize(new_logmel (80, F) STFT log-mel, original_wave (T,))`: the
    change relative to the original's STFT log-mel becomes an envelope gain
    (interpolated from the STFT hop to 10 ms frames); F0 is the original's
    times `f0_factor`.
    """

    name = "source_filter"
    needs_original = True

    def __init__(
        self, sample_rate: int, device: str = "cpu", checkpoint: str | None = None, f0_factor: float = 1.0, **options
    ):
        super().__init__(sample_rate, "cpu", checkpoint, f0_factor=float(f0_factor), **options)
        self.f0_factor = float(f0_factor)

    @torch.no_grad()
    def synthesize(self, new_logmel: torch.Tensor, original_wave: torch.Tensor) -> torch.Tensor:
        self.check_shapes(new_logmel, original_wave)
        wave = original_wave.detach().to("cpu", torch.float32)
        features = analyse(wave, self.sample_rate)
        change = (new_logmel.cpu().float() - self.mel(wave.unsqueeze(0)).squeeze(0)).numpy()  # (80, F)
        hop_s = self.mel.hop_length / self.sample_rate
        mel_times = (np.arange(change.shape[1]) + 0.5) * hop_s
        world_times = np.arange(features.f0.shape[0]) * FRAME_PERIOD_MS / 1000.0
        gain = torch.from_numpy(interp_axis(change, mel_times, world_times, axis=1).astype(np.float32))
        return resynthesize(features, features.f0 * self.f0_factor, gain)
