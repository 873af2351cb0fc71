"""Fixed-size per-utterance feature vectors for the attribute attackers.

The attacker is a small classifier on top of these: the frozen speaker
embedding (timbre, identity, gender), pooled log-mel statistics (spectral
envelope, voice quality, emotion) and prosody statistics (pitch level and
range, loudness dynamics, voicing rate). Training a head on them takes seconds
on a CPU, which is what lets `evaluate` train both attackers for every label.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

FEATURE_RATE = 16000
N_MELS = 40
N_FFT = 400
HOP = 160


def load_16k(path: Path) -> tuple[np.ndarray, float]:
    """Decode `path` and resample it to FEATURE_RATE: ((T,) float32 mono wave, duration in seconds of the file).

    Raises AudioError (anoncli.audio.read_audio) for a missing, empty or undecodable file.
    """
    import torch

    from anoncli.audio import read_audio, resample

    audio = read_audio(path)
    wave = resample(torch.from_numpy(audio.samples), audio.sample_rate, FEATURE_RATE).numpy()
    return np.ascontiguousarray(wave, dtype=np.float32), audio.duration_s


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3))


@lru_cache(maxsize=8)
def _mel_basis(n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """(n_mels, N_FFT // 2 + 1) triangular Slaney-normalised mel filters: `librosa.filters.mel`'s defaults
    (written out here so that scoring does not import librosa, ~1 s of CPU per worker)."""
    fmax = FEATURE_RATE / 2 if fmax is None else fmax
    fft_hz = np.fft.rfftfreq(N_FFT, d=1.0 / FEATURE_RATE)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def mel_power(wave: np.ndarray, n_mels: int = N_MELS, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """(frames, n_mels) mel power spectrogram, numerically librosa's `melspectrogram` defaults.

    Centred frames with zero padding, Hann window, |STFT|², Slaney mel basis;
    written with a BLAS matmul because librosa's einsum is ~10× slower here.
    """
    x = np.asarray(wave, dtype=np.float32)
    pad = N_FFT // 2
    x = np.pad(x, (pad, pad))
    if len(x) < N_FFT:
        x = np.pad(x, (0, N_FFT - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]
    window = _hann()
    power = np.abs(np.fft.rfft(frames * window, axis=1)).astype(np.float32) ** 2
    return power @ _mel_basis(n_mels, fmin, fmax).T


@lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    """Periodic Hann window of N_FFT samples (scipy's get_window("hann", N_FFT))."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


def log_mel(wave: np.ndarray) -> np.ndarray:
    """(frames, N_MELS) log-mel energies at 16 kHz, 25 ms windows, 10 ms hop, 50–8000 Hz."""
    return np.log(mel_power(wave, N_MELS, 50.0, 8000.0) + 1e-6).astype(np.float32)


def _stats(values: np.ndarray) -> list[float]:
    if values.size == 0:
        return [0.0] * 5
    return [float(np.mean(values)), float(np.std(values)), *map(float, np.percentile(values, [10, 50, 90]))]


def prosody_features(wave: np.ndarray, f0: np.ndarray) -> np.ndarray:
    """Pitch (log F0 over voiced frames), loudness and voicing statistics: 17 numbers."""
    voiced = f0 > 0
    log_f0 = np.log(f0[voiced]) if np.any(voiced) else np.zeros(0)
    delta_f0 = np.abs(np.diff(log_f0)) if log_f0.size > 1 else np.zeros(0)
    frame = HOP
    n_frames = max(1, len(wave) // frame)
    frames = np.asarray(wave[: n_frames * frame], dtype=np.float64).reshape(n_frames, frame)
    log_rms = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
    active = log_rms > (log_rms.max() - 40)
    duration = len(wave) / FEATURE_RATE
    return np.asarray(
        _stats(log_f0)
        + _stats(log_rms[active] - log_rms.max())
        + [
            float(np.mean(delta_f0)) if delta_f0.size else 0.0,
            float(np.mean(voiced)) if voiced.size else 0.0,
            float(np.mean(active)),
            float(np.log(duration + 1e-3)),
            float(np.mean(np.abs(np.diff(active.astype(int))))) if active.size > 1 else 0.0,
            float(np.mean(voiced[: len(active)][active[: len(voiced)]])) if voiced.size and active.any() else 0.0,
            float(np.std(np.diff(log_rms))) if log_rms.size > 1 else 0.0,
        ],
        dtype=np.float32,
    )


def spectral_features(wave: np.ndarray) -> np.ndarray:
    """Mean and std of log-mel and of its time derivative over active frames: 4 × N_MELS numbers."""
    mel = log_mel(wave)
    energy = mel.mean(axis=1)
    active = mel[energy > energy.max() - 8] if mel.size else mel  # ~35 dB below the loudest frame
    if active.shape[0] < 2:
        active = mel if mel.shape[0] >= 2 else np.zeros((2, N_MELS), dtype=np.float32)
    delta = np.diff(active, axis=0)
    return np.concatenate([active.mean(0), active.std(0), delta.mean(0), delta.std(0)]).astype(np.float32)


def attribute_features(wave16k: np.ndarray, f0: np.ndarray, embedding: np.ndarray) -> np.ndarray:
    """The attackers' input: speaker embedding ⊕ spectral stats ⊕ prosody stats."""
    return np.concatenate(
        [np.asarray(embedding, dtype=np.float32), spectral_features(wave16k), prosody_features(wave16k, f0)]
    ).astype(np.float32)
