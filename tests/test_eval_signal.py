"""Signal measures on synthetic voices: identical signals score perfectly, damaged ones do not."""

import numpy as np
import pytest
from synth_audio import voiced

from anoncli.scoring import signal_metrics
from anoncli.scoring.features import mel_power

RATE = 16000


@pytest.fixture(scope="module")
def voice():
    return voiced(1.5, RATE, f0=140.0, seed=3)


def test_identical_signals(voice):
    assert signal_metrics.stoi(voice, voice, RATE) == pytest.approx(1.0, abs=1e-3)
    assert signal_metrics.f0_correlation(voice, voice, RATE) == pytest.approx(1.0, abs=1e-6)
    assert signal_metrics.log_spectral_distance(voice, voice, RATE) == pytest.approx(0.0, abs=1e-6)
    assert signal_metrics.duration_ratio(1.5, 1.5) == 1.0


def test_noise_is_unintelligible_and_far(voice):
    noise = np.random.default_rng(0).normal(0, 0.1, len(voice)).astype(np.float32)
    assert signal_metrics.stoi(voice, noise, RATE) < 0.3
    assert signal_metrics.log_spectral_distance(voice, noise, RATE) > 5.0


def test_f0_correlation_follows_the_contour(voice):
    shifted = voiced(1.5, RATE, f0=200.0, seed=3)  # same contour shape, other register: r stays high
    assert signal_metrics.f0_correlation(voice, shifted, RATE) > 0.9
    t = np.arange(len(voice)) / RATE
    flat = voiced(1.5, RATE, f0=140.0, seed=3) * 0
    flat += (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)  # steady tone: no shared contour
    r = signal_metrics.f0_correlation(voice, flat, RATE)
    assert not (r > 0.5)


def test_f0_alignment_finds_a_delay(voice):
    delayed = np.concatenate([np.zeros(RATE // 20, dtype=np.float32), voice])  # 50 ms later
    assert signal_metrics.f0_correlation(voice, delayed, RATE) > 0.95


def test_fast_mel_matches_librosa(voice):
    import librosa

    reference = librosa.feature.melspectrogram(y=voice, sr=RATE, n_fft=400, hop_length=160, n_mels=40).T
    ours = mel_power(voice)
    assert ours.shape == reference.shape
    assert np.max(np.abs(ours - reference)) <= 1e-4 * np.max(reference)
