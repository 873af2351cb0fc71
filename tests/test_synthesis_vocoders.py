"""Training-free vocoders: copy-synthesis quality, lengths, mel-domain changes, F0 shift."""

import math

import numpy as np
import pytest
import pyworld
import torch
from pystoi import stoi

from anoncli.errors import AnoncliError
from anoncli.synthesis import DEFAULT_VOCODER, create_vocoder, vocoder_names
from anoncli.synthesis.mel import LogMel

RATE = 16000


def voiced(seconds=1.0, f0=130.0, seed=0):
    """A pulse-train-like 'voice': harmonics with vibrato and a syllable-rate envelope."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(int(RATE * seconds)) / RATE
    pitch = f0 + 20 * torch.sin(2 * math.pi * 2 * t)
    phase = 2 * math.pi * torch.cumsum(pitch, 0) / RATE
    wave = sum(torch.sin(k * phase) / k for k in range(1, 25))
    envelope = 0.55 + 0.45 * torch.sin(2 * math.pi * 4 * t)
    return (0.1 * wave * envelope + 0.002 * torch.randn(len(t), generator=gen)).float()


def copy_synthesis(name, wave, **options):
    vocoder = create_vocoder(name, RATE, **options)
    logmel = vocoder.mel(wave[None])[0]
    return vocoder.synthesize(logmel, wave)


def test_registry_lists_the_backends_and_default():
    assert {"phase", "griffinlim", "world", "melgan"} <= set(vocoder_names())
    assert DEFAULT_VOCODER in vocoder_names() and DEFAULT_VOCODER != "melgan"
    assert create_vocoder("phase", RATE).needs_original
    assert not create_vocoder("griffinlim", RATE).needs_original


def test_unknown_vocoder_is_a_user_error():
    with pytest.raises(AnoncliError, match="unknown vocoder"):
        create_vocoder("wavenet", RATE)


def test_phase_identity_returns_the_input():
    wave = voiced()
    out = copy_synthesis("phase", wave)
    assert out.shape == wave.shape
    assert torch.max(torch.abs(out - wave)) < 1e-4


def test_phase_applies_a_uniform_mel_gain():
    wave = voiced()
    vocoder = create_vocoder("phase", RATE)
    logmel = vocoder.mel(wave[None])[0]
    out = vocoder.synthesize(logmel + math.log10(2.0), wave)
    assert torch.allclose(out, 2 * wave, atol=1e-3)


def test_phase_band_change_moves_energy_only_there():
    wave = voiced()
    vocoder = create_vocoder("phase", RATE)
    logmel = vocoder.mel(wave[None])[0]
    changed = logmel.clone()
    changed[40:] -= 2.0  # -40 dB above ~1.8 kHz
    out = vocoder.synthesize(changed, wave)
    before = vocoder.mel(wave[None])[0]
    after = vocoder.mel(out[None])[0]
    assert (before[:30] - after[:30]).abs().mean() < 0.1
    assert (before[50:] - after[50:]).mean() > 1.0


def test_griffinlim_copy_synthesis_is_intelligible():
    wave = voiced()
    out = copy_synthesis("griffinlim", wave, n_iter=32)
    assert out.shape == wave.shape
    assert stoi(wave.numpy(), out.numpy(), RATE) > 0.8
    assert mel_distance(wave, out) < 0.2


def mel_distance(a, b):
    mel = LogMel(RATE)
    return float((mel(a[None]) - mel(b[None])).abs().mean())


def test_world_copy_synthesis_is_intelligible_and_keeps_the_spectrum():
    wave = voiced()
    out = copy_synthesis("world", wave, f0_method="dio")
    assert out.shape == wave.shape
    assert stoi(wave.numpy(), out.numpy(), RATE) > 0.85
    # WORLD does not keep the waveform's phase, but its mel stays close (noise: ~0.77).
    assert mel_distance(wave, out) < 0.2


def test_world_moves_f0():
    wave = voiced(f0=120.0)
    out = copy_synthesis("world", wave, f0_method="dio", f0_factor=1.5)

    def median_f0(x):
        f0, _ = pyworld.dio(x.numpy().astype(np.float64), RATE)
        return float(np.median(f0[f0 > 0]))

    assert median_f0(out) / median_f0(wave) == pytest.approx(1.5, rel=0.08)


@pytest.mark.parametrize("name", ["griffinlim", "world"])
def test_mel_change_reaches_the_output(name):
    wave = voiced()
    vocoder = create_vocoder(name, RATE, **({"f0_method": "dio"} if name == "world" else {"n_iter": 16}))
    logmel = vocoder.mel(wave[None])[0]
    changed = logmel.clone()
    changed[40:] -= 1.5
    after = vocoder.mel(vocoder.synthesize(changed, wave)[None])[0]
    assert (logmel[:30] - after[:30]).abs().mean() < 0.25
    assert (logmel[50:] - after[50:]).mean() > 0.9


@pytest.mark.parametrize("name", ["phase", "griffinlim", "world"])
@pytest.mark.parametrize("length", [1, 200, 300, 1000, 5000])
def test_any_length_comes_back_with_the_same_length(name, length):
    wave = torch.randn(length) * 0.05
    out = copy_synthesis(name, wave, **({"n_iter": 4} if name == "griffinlim" else {}))
    assert out.shape == (length,)
    assert torch.isfinite(out).all()


def test_mel_with_wrong_frame_count_is_refused():
    vocoder = create_vocoder("phase", RATE)
    with pytest.raises(ValueError, match="frames"):
        vocoder.synthesize(torch.zeros(80, 3), torch.zeros(5000))


def test_mel_front_end_of_vocoder_matches_shared_convention():
    vocoder = create_vocoder("griffinlim", RATE)
    wave = voiced(0.3)
    assert torch.equal(vocoder.mel(wave[None]), LogMel(RATE)(wave[None]))
