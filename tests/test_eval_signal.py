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


def speech_like(seed: int = 3) -> np.ndarray:
    """Three voiced stretches with pauses between them: an energy envelope with landmarks."""
    gap = np.zeros(RATE // 4, dtype=np.float32)
    return np.concatenate(
        [
            voiced(0.6, RATE, 120, seed=seed),
            gap,
            voiced(0.8, RATE, 140, seed=seed + 1),
            gap,
            voiced(0.5, RATE, 100, seed=seed + 2),
        ]
    )


@pytest.mark.parametrize("delay_s", [0.5, 0.05, -0.25])
def test_stoi_aligns_a_delayed_copy_and_records_the_lag(delay_s):
    speech = speech_like()
    shift = int(abs(delay_s) * RATE)
    moved = np.concatenate([np.zeros(shift, np.float32), speech]) if delay_s > 0 else speech[shift:]
    score = signal_metrics.stoi(speech, moved, RATE)
    assert score > 0.99 and score.lag_s == pytest.approx(delay_s, abs=0.002)
    assert signal_metrics.stoi(speech, speech, RATE).lag_s == 0.0


def test_stoi_aligns_a_delay_padded_inside_the_same_length():
    """A 0.5 s delay whose end is cut off (the output keeps the input's length) is found too; an aligned
    noisy copy stays at lag 0."""
    speech = np.concatenate([speech_like(), np.zeros(RATE // 2, np.float32)])
    shift = RATE // 2
    moved = np.concatenate([np.zeros(shift, np.float32), speech[:-shift]])
    score = signal_metrics.stoi(speech, moved, RATE)
    assert score > 0.99 and score.lag_s == pytest.approx(0.5, abs=0.002)
    noisy = speech + 0.05 * np.random.default_rng(0).standard_normal(len(speech)).astype(np.float32)
    assert signal_metrics.stoi(speech, noisy, RATE).lag_s == 0.0


def test_stoi_lag_follows_the_timing_of_a_changed_voice():
    """Another voice with the same timing (what a voice conversion keeps) aligns on the energy envelope."""
    speech = speech_like()
    other = np.concatenate([np.zeros(RATE // 2, np.float32), speech_like(seed=40) * 0.5])
    assert signal_metrics.stoi_lag(speech, other, RATE) == pytest.approx(RATE // 2, abs=RATE * 0.004)


def test_fast_mel_matches_librosa(voice):
    import librosa

    reference = librosa.feature.melspectrogram(y=voice, sr=RATE, n_fft=400, hop_length=160, n_mels=40).T
    ours = mel_power(voice)
    assert ours.shape == reference.shape
    assert np.max(np.abs(ours - reference)) <= 1e-4 * np.max(reference)


def test_evaluate_scores_a_delayed_output_at_its_lag(tmp_path, monkeypatch):
    import json

    import pandas as pd
    import soundfile as sf
    from typer.testing import CliRunner

    from anoncli.cli.app import app

    monkeypatch.setenv("ANONCLI_CACHE", str(tmp_path / "cache"))
    original, anonymized = tmp_path / "orig", tmp_path / "anon"
    original.mkdir()
    anonymized.mkdir()
    for i in range(2):
        speech = speech_like(seed=10 * i)
        sf.write(original / f"u{i}.wav", speech, RATE)
        sf.write(anonymized / f"u{i}.wav", np.concatenate([np.zeros(RATE // 2, np.float32), speech]), RATE)
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(original),
            str(anonymized),
            "--out",
            str(tmp_path / "rep"),
            "--probes",
            "signal",
            "--bootstrap",
            "0",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["signal"]["stoi"] > 0.99 and "stoi_lag_ms" not in summary["signal"]
    scores = pd.read_parquet(tmp_path / "rep" / "scores.parquet")
    assert scores["signal.stoi_lag_ms"].tolist() == pytest.approx([500.0, 500.0], abs=2)
