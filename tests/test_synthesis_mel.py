"""The shared log-mel front end: frame count, alignment, normalisation."""

import math

import pytest
import torch

from anoncli.synthesis.mel import LogMel, denormalize, normalize


@pytest.mark.parametrize("length", [1, 100, 255, 256, 257, 384, 385, 1000, 4096, 16001])
def test_frames_are_ceil_of_length_over_hop(length):
    mel = LogMel(16000)
    out = mel(torch.randn(2, length) * 0.1)
    expected = max(1, math.ceil(length / 256))
    assert out.shape == (2, 80, expected)
    assert mel.frames_for(length) == expected
    assert torch.isfinite(out).all()


def test_one_dimensional_input_and_other_settings():
    mel = LogMel(sample_rate=8000, n_fft=512, hop_length=128, n_mels=40)
    out = mel(torch.randn(1000))
    assert out.shape == (1, 40, math.ceil(1000 / 128))


def test_silence_is_the_log_floor():
    out = LogMel(16000)(torch.zeros(1, 3000))
    assert torch.allclose(out, torch.full_like(out, -5.0))


def test_frame_i_describes_samples_i_hop_to_next_hop():
    # A click in the middle of hop block k gives most energy in frame k.
    mel = LogMel(16000)
    for k in (3, 10, 20):
        wave = torch.zeros(1, 256 * 24)
        wave[0, k * 256 + 128] = 1.0
        energy = mel.magnitude_stft(wave).pow(2).sum(dim=1)[0]
        assert int(energy.argmax()) == k


def test_mel_of_a_tone_peaks_at_its_band():
    mel = LogMel(16000)
    t = torch.arange(16000) / 16000
    low = mel(torch.sin(2 * math.pi * 300 * t)[None])[0].mean(dim=1).argmax()
    high = mel(torch.sin(2 * math.pi * 4000 * t)[None])[0].mean(dim=1).argmax()
    assert high > low + 20


def test_filterbank_and_magnitude_are_exposed():
    mel = LogMel(16000)
    assert mel.filterbank.shape == (513, 80)
    wave = torch.randn(1, 2000)
    assert mel.magnitude_stft(wave).shape == (1, 513, 8)
    assert torch.allclose(mel.mel_from_magnitude(mel.magnitude_stft(wave)), mel(wave))


def test_normalize_round_trip_and_range():
    logmel = LogMel(16000)(torch.randn(3, 5000) * torch.tensor([[0.01], [0.1], [1.0]]))
    norm, mu, sigma = normalize(logmel)
    assert mu.shape == (3, 1, 1) and sigma.shape == (3, 1, 1)
    assert norm.min() >= -1.0 and norm.max() <= 1.0
    unclamped = norm.abs() < 1.0
    restored = denormalize(norm, mu, sigma)
    assert torch.allclose(restored[unclamped], logmel[unclamped], atol=1e-5)
    # Per utterance: each row has its own mean.
    assert len(set(mu.flatten().tolist())) == 3


def test_normalize_constant_input_does_not_divide_by_zero():
    norm, mu, sigma = normalize(torch.full((1, 80, 10), -5.0))
    assert torch.isfinite(norm).all() and torch.all(norm == 0)
    assert torch.allclose(denormalize(norm, mu, sigma), torch.full((1, 80, 10), -5.0))
