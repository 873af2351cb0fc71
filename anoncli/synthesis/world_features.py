"""A compact WORLD representation of speech and its inverse: coded envelope, log-F0, voicing, aperiodicity, level.

Per 5 ms frame (`FRAME_PERIOD_MS`), from WORLD (Morise et al., IEICE 2016,
through pyworld; DIO + StoneMask F0 in 60-600 Hz, CheapTrick envelope, D4C
aperiodicity):

* `mcep` (T, 40): the spectral envelope with its frame level removed, coded
  by WORLD's own coder (`pyworld.code_spectral_envelope`: the log envelope on
  a mel-warped frequency axis, then a DCT; Morise's codec, the coefficients
  are mel-cepstral in the sense of the WORLD vocoder's coding);
* `level_db` (T,): the frame level, 10·log10 of the envelope's mean power
  (dB); the coded envelope describes the spectrum's shape only;
* `log_f0` (T,) natural log of F0 in Hz, and `voiced` (T,) bool; where a
  frame is unvoiced `log_f0` is 0 and means nothing;
* `bap` (T, A): band aperiodicity coded by `pyworld.code_aperiodicity`
  (A = `pyworld.get_num_aperiodicities(rate)`: 1 band at 16 kHz, 3 at 22.05
  kHz; WORLD's bands are 3 kHz wide), analysed on every second frame
  (`APERIODICITY_STRIDE`) and interpolated linearly in between: D4C is the
  slowest part of the analysis, and the bands change slowly.

`synthesize` is the inverse: `pyworld.decode_spectral_envelope`, the level
put back, `pyworld.decode_aperiodicity`, `pyworld.synthesize`. The round trip
is the coder's (40 coefficients smooth the envelope; decoding is the exact
inverse of the coding on the smoothed envelope), so the resynthesised
envelope's level matches per frame to a fraction of a dB and its shape to
within a few dB, and F0 and voicing are kept exactly.

An utterance with no voiced frame (whispered speech, a fricative) gives an
all-false `voiced`; it resynthesises unvoiced (WORLD's noise excitation).
`analyse` raises AudioError for a wave shorter than one frame.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyworld

from anoncli.errors import AudioError
from anoncli.synthesis.source_filter import F0_CEIL_HZ, F0_FLOOR_HZ

FRAME_PERIOD_MS = 5.0
N_MCEP = 40
# D4C (aperiodicity) runs on every second frame, interpolated in between (see `analyse`)
APERIODICITY_STRIDE = 2
# floor of the envelope's mean power (avoids log(0) on digital silence)
POWER_FLOOR = 1e-16


@dataclass
class CodedWorld:
    """One utterance's compact WORLD features at `FRAME_PERIOD_MS` frames (T frames)."""

    mcep: np.ndarray  # (T, N_MCEP) float64 coded, level-free envelope
    level_db: np.ndarray  # (T,) float64 frame level, dB (mean envelope power)
    log_f0: np.ndarray  # (T,) float64 ln(F0 / Hz), 0 where unvoiced
    voiced: np.ndarray  # (T,) bool
    bap: np.ndarray  # (T, A) float64 coded band aperiodicity
    sample_rate: int
    length: int  # samples of the analysed wave

    @property
    def f0(self) -> np.ndarray:
        """(T,) F0 in Hz, 0 where unvoiced."""
        return np.where(self.voiced, np.exp(self.log_f0), 0.0)

    def with_(self, **changes) -> CodedWorld:
        """A copy with some fields replaced (arrays are not copied)."""
        return replace(self, **changes)


def fft_size(sample_rate: int) -> int:
    """CheapTrick's FFT size at `sample_rate` for the F0 floor (envelopes have fft_size // 2 + 1 bins)."""
    return pyworld.get_cheaptrick_fft_size(sample_rate, F0_FLOOR_HZ)


def min_samples(sample_rate: int) -> int:
    """The shortest wave (samples) `analyse` accepts: one frame period."""
    return int(round(FRAME_PERIOD_MS / 1000.0 * sample_rate))


def analyse(wave: np.ndarray, sample_rate: int, aperiodicity: bool = True) -> CodedWorld:
    """Mono wave (N,) float in [-1, 1] (numpy or torch) -> `CodedWorld`.

    `aperiodicity=False` skips D4C (statistics only; `bap` is then (T, 0) and the
    features cannot be resynthesised). Raises AudioError when the wave is shorter than one frame.
    """
    if hasattr(wave, "detach"):
        wave = wave.detach().cpu().numpy()
    x = np.ascontiguousarray(np.asarray(wave, dtype=np.float64).reshape(-1))
    if x.size < min_samples(sample_rate):
        raise AudioError(
            f"too short for WORLD analysis: {x.size / sample_rate * 1000:.1f} ms, "
            f"at least {FRAME_PERIOD_MS:.0f} ms needed"
        )
    size = fft_size(sample_rate)
    f0, times = pyworld.dio(x, sample_rate, f0_floor=F0_FLOOR_HZ, f0_ceil=F0_CEIL_HZ, frame_period=FRAME_PERIOD_MS)
    f0 = pyworld.stonemask(x, f0, times, sample_rate)
    envelope = pyworld.cheaptrick(x, f0, times, sample_rate, f0_floor=F0_FLOOR_HZ, fft_size=size)
    power = np.maximum(envelope.mean(axis=1), POWER_FLOOR)
    mcep = pyworld.code_spectral_envelope(np.ascontiguousarray(envelope / power[:, None]), sample_rate, N_MCEP)
    if aperiodicity:
        # D4C is half of the analysis' time: it runs on every APERIODICITY_STRIDE-th frame and the coded
        # band aperiodicity (a smooth, 3-kHz-band contour) is interpolated linearly in between
        picked = np.arange(0, len(f0), APERIODICITY_STRIDE)
        ap = pyworld.d4c(x, f0[picked], times[picked], sample_rate, fft_size=size)
        coarse = pyworld.code_aperiodicity(ap, sample_rate)
        bap = np.stack([np.interp(np.arange(len(f0)), picked, band) for band in coarse.T], axis=1)
    else:
        bap = np.zeros((len(f0), 0))
    voiced = f0 > 0
    log_f0 = np.where(voiced, np.log(np.maximum(f0, 1e-3)), 0.0)
    return CodedWorld(
        mcep=mcep,
        level_db=10.0 * np.log10(power),
        log_f0=log_f0,
        voiced=voiced,
        bap=bap,
        sample_rate=int(sample_rate),
        length=int(x.size),
    )


def envelope(features: CodedWorld) -> np.ndarray:
    """(T, fft_size/2 + 1) power envelope decoded from the coded envelope and the frame level."""
    decoded = pyworld.decode_spectral_envelope(
        np.ascontiguousarray(features.mcep, dtype=np.float64), features.sample_rate, fft_size(features.sample_rate)
    )
    # the decoded shape's mean power is not exactly 1: the level is the frame's, not the coder's
    decoded /= np.maximum(decoded.mean(axis=1, keepdims=True), POWER_FLOOR)
    return decoded * (10.0 ** (features.level_db / 10.0))[:, None]


def synthesize(features: CodedWorld) -> np.ndarray:
    """`CodedWorld` -> wave (length,) float32, peak at most 0.999 (WORLD can overshoot after a change).

    Raises ValueError when the features carry no aperiodicity (analysed with aperiodicity=False).
    """
    if features.bap.shape[1] == 0:
        raise ValueError("synthesis needs the aperiodicity (analyse(..., aperiodicity=True))")
    size = fft_size(features.sample_rate)
    ap = pyworld.decode_aperiodicity(np.ascontiguousarray(features.bap, dtype=np.float64), features.sample_rate, size)
    out = pyworld.synthesize(
        np.ascontiguousarray(features.f0, dtype=np.float64),
        envelope(features),
        np.ascontiguousarray(ap),
        features.sample_rate,
        FRAME_PERIOD_MS,
    )
    out = np.asarray(out, dtype=np.float64)
    peak = float(np.abs(out).max()) if out.size else 0.0
    if peak > 0.999:
        out *= 0.999 / peak
    fitted = np.zeros(features.length, dtype=np.float32)
    fitted[: min(len(out), features.length)] = out[: features.length]
    return fitted
