"""Per-utterance signal measures that need no model: STOI, F0 correlation, LSD, duration ratio, SDR.

Every function takes float32 mono arrays at one common sample rate (the caller
resamples); differing lengths are handled by truncating to the shorter one,
except the F0 correlation, which searches the best small lag first.
"""

from __future__ import annotations

import numpy as np

STOI_RATE = 10000           # pystoi's internal rate; resampling ourselves avoids its slow resampler
F0_FRAME_MS = 10.0          # VoicePrivacy 2022: 10 ms frames, 75–500 Hz
F0_FLOOR_HZ = 75.0
F0_CEIL_HZ = 500.0
F0_MAX_LAG_FRAMES = 10      # alignment search range beyond the length difference
MIN_VOICED_FRAMES = 5


def _truncate(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = min(len(a), len(b))
    return a[:n], b[:n]


def _to_rate(samples: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    if rate == new_rate:
        return samples
    import torch

    from anoncli.audio import resample

    return resample(torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)), rate, new_rate).numpy()


def stoi(reference: np.ndarray, processed: np.ndarray, sample_rate: int) -> float:
    """Short-time objective intelligibility (0..1) of `processed` against `reference`."""
    from pystoi import stoi as pystoi_stoi

    ref = _to_rate(reference, sample_rate, STOI_RATE)
    proc = _to_rate(processed, sample_rate, STOI_RATE)
    ref, proc = _truncate(ref, proc)
    if len(ref) < STOI_RATE // 4:  # pystoi needs a few 384-ms segments
        return float("nan")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not enough STFT frames" for very short files: result is nan
        value = pystoi_stoi(ref.astype(np.float64), proc.astype(np.float64), STOI_RATE, extended=False)
    return float(value)


def f0_track(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """F0 in Hz per 10 ms frame (0 where unvoiced), WORLD's DIO refined by StoneMask."""
    import pyworld

    x = np.ascontiguousarray(samples, dtype=np.float64)
    f0, times = pyworld.dio(x, sample_rate, f0_floor=F0_FLOOR_HZ, f0_ceil=F0_CEIL_HZ, frame_period=F0_FRAME_MS)
    f0 = pyworld.stonemask(x, f0, times, sample_rate)
    f0[(f0 < F0_FLOOR_HZ) | (f0 > F0_CEIL_HZ)] = 0.0
    return f0


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < MIN_VOICED_FRAMES or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def f0_correlation_from_tracks(f0_ref: np.ndarray, f0_proc: np.ndarray) -> float:
    """Pearson r over frames voiced in both tracks, at the lag with the most such frames.

    VoicePrivacy aligns the tracks before correlating; anonymization that keeps
    the length gives lag 0, a method that stretches time gets the best shift.
    """
    best = (-1, float("nan"))
    diff = len(f0_proc) - len(f0_ref)
    lags = range(min(0, diff) - F0_MAX_LAG_FRAMES, max(0, diff) + F0_MAX_LAG_FRAMES + 1)
    for lag in lags:
        if lag >= 0:
            a, b = f0_ref, f0_proc[lag:]
        else:
            a, b = f0_ref[-lag:], f0_proc
        a, b = _truncate(a, b)
        both = (a > 0) & (b > 0)
        count = int(both.sum())
        if count > best[0] or (lag == 0 and count == best[0]):
            best = (count, _pearson(a[both], b[both]))
    return best[1]


def f0_correlation(reference: np.ndarray, processed: np.ndarray, sample_rate: int) -> float:
    return f0_correlation_from_tracks(f0_track(reference, sample_rate), f0_track(processed, sample_rate))


def log_spectral_distance(reference: np.ndarray, processed: np.ndarray, sample_rate: int) -> float:
    """Mean over frames of the RMS difference of the dB power spectra (dB); 0 for identical signals."""
    ref, proc = _truncate(reference, processed)
    n_fft = 512 if sample_rate >= 16000 else 256
    hop = n_fft // 4
    if len(ref) < n_fft:
        return float("nan")
    window = np.hanning(n_fft).astype(np.float32)

    def power(x: np.ndarray) -> np.ndarray:
        frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * window
        return np.abs(np.fft.rfft(frames, axis=1)) ** 2

    p_ref, p_proc = power(ref), power(proc)
    # Frames silent in the reference would dominate with arbitrary dB noise: score frames with energy.
    energy = p_ref.sum(axis=1)
    keep = energy > energy.max() * 1e-6 if energy.size else energy.astype(bool)
    if not np.any(keep):
        return float("nan")
    floor = 1e-10
    diff = 10 * np.log10(p_ref[keep] + floor) - 10 * np.log10(p_proc[keep] + floor)
    return float(np.mean(np.sqrt(np.mean(diff**2, axis=1))))


def duration_ratio(reference_seconds: float, processed_seconds: float) -> float:
    return float(processed_seconds / reference_seconds) if reference_seconds > 0 else float("nan")


def sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Plain signal-to-distortion ratio 10·log10(Σs² / Σ(s − ŝ)²) in dB over the aligned (shorter) length."""
    n = min(len(reference), len(estimate))
    ref, est = np.asarray(reference[:n], np.float64), np.asarray(estimate[:n], np.float64)
    err = np.sum((ref - est) ** 2)
    return float(10 * np.log10((np.sum(ref**2) + 1e-12) / (err + 1e-12)))
