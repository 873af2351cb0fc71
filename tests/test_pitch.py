"""F0 tracking and F0 correlation on synthetic voiced speech: what keeps the pitch scores high, what breaks it scores low."""

import numpy as np
import pytest
import torch
from synth_audio import voiced

from anoncli.dsp import pitch
from anoncli.methods import MethodOptions, create_method

RATE = 16000


def syllables(depth: float = 0.08, f0: float = 140.0, seed: int = 3) -> np.ndarray:
    """2 s of voiced audio cut into four 0.4 s 'syllables' by 0.1 s pauses, so tracks have gaps."""
    wave = voiced(2.0, RATE, f0=f0, seed=seed, depth=depth)
    gate = np.ones(len(wave), dtype=np.float32)
    for start in (0.4, 0.9, 1.4):
        gate[int(start * RATE) : int((start + 0.1) * RATE)] = 0.0
    return wave * gate


@pytest.fixture(scope="module")
def voice():
    return syllables()


def test_track_follows_the_synthetic_contour(voice):
    track = pitch.f0_track(voice, RATE)
    assert track.shape == (pitch.n_frames(len(voice), RATE),)
    t = np.arange(len(track)) * pitch.FRAME_MS / 1000
    truth = 140.0 * (1.0 + 0.08 * np.sin(2 * np.pi * 1.5 * t))
    voiced_frames = track > 0
    assert voiced_frames.mean() > 0.6
    assert np.median(np.abs(track[voiced_frames] / truth[voiced_frames] - 1)) < 0.02
    assert not voiced_frames[int(0.43 / 0.01) : int(0.47 / 0.01)].any()  # the pauses are unvoiced


def test_identity_and_gain_change_keep_r(voice):
    same = pitch.f0_correlation(voice, voice, RATE)
    assert same.r >= 0.95 and same.lag == 0 and same.note is None
    identity = create_method("identity", MethodOptions()).process([torch.from_numpy(voice)], [{}])[0].audio.numpy()
    assert pitch.f0_correlation(voice, identity, RATE).r >= 0.95
    assert pitch.f0_correlation(voice, 0.2 * voice, RATE).r >= 0.95


@pytest.mark.parametrize("alpha", [0.5, 0.7, 0.9])
def test_mcadams_keeps_r(voice, alpha):
    method = create_method("mcadams", MethodOptions(extra={"backend": "torch", "alpha": alpha}))
    out = method.process([torch.from_numpy(voice)], [{"alpha": alpha}])[0].audio.numpy()
    result = pitch.f0_correlation(voice, out, RATE)
    assert result.r >= 0.95, result


def test_mirrored_contour_is_negative(voice):
    mirrored = syllables(depth=-0.08)
    result = pitch.f0_correlation(voice, mirrored, RATE)
    assert result.r < 0, result
    # another register with the same contour still correlates
    assert pitch.f0_correlation(voice, syllables(f0=210.0), RATE).r >= 0.95


def test_octave_jumps_of_the_tracker_are_reconciled():
    frames = np.arange(200)
    reference = 150.0 * (1.0 + 0.1 * np.sin(2 * np.pi * frames / 120))
    reference[90:100] = 0.0
    jumped = reference.copy()
    jumped[20:55] *= 2.0  # the tracker doubled a stretch on the processed side
    jumped[130:150] /= 2.0  # and halved another
    naive = np.corrcoef(reference[reference > 0], jumped[jumped > 0])[0, 1]
    assert naive < 0.5
    result = pitch.f0_correlation_from_tracks(reference, jumped)
    assert result.r >= 0.99 and result.octave_errors == 55 and result.lag == 0
    # a one-frame blip in a single track is removed by the clean-up pass
    blip = reference.copy()
    blip[60] *= 2.0
    assert pitch.clean_track(blip)[60] == pytest.approx(reference[60], rel=0.02)


def test_lengths_that_match_use_lag_zero_and_a_delay_is_found(voice):
    track = pitch.f0_track(voice, RATE)
    shifted = np.roll(track, 3)  # same length: no search, whatever the frames look like
    assert pitch.f0_correlation_from_tracks(track, shifted).lag == 0
    delayed = np.concatenate([np.zeros(RATE // 20, dtype=np.float32), voice])  # 50 ms later
    result = pitch.f0_correlation(voice, delayed, RATE)
    assert result.lag == 5 and result.r >= 0.95


def test_agreement_not_overlap_chooses_the_lag():
    frames = np.arange(200)
    reference = np.where(frames < 100, 150.0 * (1.0 + 0.1 * np.sin(2 * np.pi * frames / 40)), 0.0)
    # The output is 4 frames later and voiced throughout: every lag from 0 to 16 has 100 co-voiced
    # frames, so only agreement tells the 4-frame delay from the rest.
    processed = np.random.default_rng(0).uniform(100.0, 200.0, 210)
    processed[4:104] = reference[:100]
    result = pitch.f0_correlation_from_tracks(reference, processed)
    assert result.lag == 4 and result.r > 0.99


def test_missing_correlations_say_why(voice):
    silence = np.zeros_like(voice)
    assert pitch.f0_correlation(voice, silence, RATE).note == "silent output"
    assert pitch.f0_correlation(1e-5 * voice, voice, RATE).note == "silent original"
    short = pitch.f0_correlation(voice[:500], voice[:500], RATE)
    assert np.isnan(short.r) and short.note == "too short"
    unvoiced = pitch.f0_correlation_from_tracks(np.zeros(100), np.full(100, 120.0))
    assert np.isnan(unvoiced.r) and unvoiced.note == "unvoiced original"
    apart = np.zeros(100)
    apart[:40] = 120.0
    other = np.zeros(100)
    other[60:] = 120.0 + np.arange(40)
    assert pitch.f0_correlation_from_tracks(apart, other).note == "too few co-voiced frames"
    flat = pitch.f0_correlation_from_tracks(np.full(100, 120.0), 130.0 + np.arange(100.0))
    assert np.isnan(flat.r) and flat.note == "flat F0"
