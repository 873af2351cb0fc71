"""dsp.levels: the edge-trimming span the ASR probe decodes, and the silence test every score shares."""

from __future__ import annotations

import numpy as np

from anoncli.dsp.levels import active_span


def _tone_in_silence(sr=16000, lead=1.0, tone=0.5, tail=1.2, noise_db=-70.0, seed=0):
    rng = np.random.default_rng(seed)
    n_lead, n_tone, n_tail = int(lead * sr), int(tone * sr), int(tail * sr)
    x = rng.normal(0.0, 10 ** (noise_db / 20), n_lead + n_tone + n_tail)
    t = np.arange(n_tone) / sr
    x[n_lead : n_lead + n_tone] += 0.5 * np.sin(2 * np.pi * 220 * t)
    return x, n_lead, n_lead + n_tone


def test_span_covers_the_tone_plus_margin_and_drops_quiet_edges():
    x, on, off = _tone_in_silence()
    start, stop = active_span(x, 16000, floor_db=-40.0, margin_s=0.3)
    assert on - int(0.3 * 16000) - 160 <= start <= on - int(0.3 * 16000) + 160
    assert off + int(0.3 * 16000) - 160 <= stop <= off + int(0.3 * 16000) + 160
    assert stop - start < x.size * 0.7


def test_quiet_speech_above_the_floor_is_kept():
    x, on, off = _tone_in_silence()
    x[off + 1600 : off + 3200] += 0.5 * 10 ** (-30 / 20) * np.sin(np.arange(1600) * 0.3)  # 30 dB down: kept
    _start, stop = active_span(x, 16000, floor_db=-40.0, margin_s=0.0)
    assert stop >= off + 3200 - 160


def test_silence_and_very_short_signals_are_returned_whole():
    assert active_span(np.zeros(16000), 16000) == (0, 16000)
    assert active_span(np.ones(50), 16000) == (0, 50)
    assert active_span(np.zeros(0), 16000) == (0, 0)


def test_a_signal_loud_to_the_end_keeps_its_last_partial_frame():
    x = np.concatenate([np.zeros(16000), 0.5 * np.ones(16050)])
    assert active_span(x, 16000, margin_s=0.0)[1] == x.size


def test_silence_is_judged_on_the_loudest_frame_not_the_whole_file():
    from anoncli.dsp.levels import is_silent, loudest_frame_dbfs, rms_dbfs

    sr = 16000
    quiet_speech = np.zeros(4 * sr)
    t = np.arange(int(0.1 * sr)) / sr
    quiet_speech[sr : sr + t.size] = 0.005 * np.sin(2 * np.pi * 200 * t)  # a -49 dBFS RMS burst in 4 s of silence
    assert rms_dbfs(quiet_speech) < -60.0  # the whole file is below the threshold...
    assert not is_silent(quiet_speech)  # ...but it holds speech-level sound
    assert -50.0 < loudest_frame_dbfs(quiet_speech) < -48.0
    noise_floor = np.random.default_rng(0).normal(0.0, 10 ** (-70 / 20), sr)
    assert is_silent(noise_floor) and is_silent(np.zeros(sr)) and is_silent(np.zeros(0))
    assert not is_silent(0.5 * np.ones(100))  # shorter than a frame: the whole signal is the frame
