"""McAdams method: checked against a plain per-frame numpy/scipy loop on synthetic voiced audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import scipy.signal
import torch

from anoncli.corpus.utterance import Utterance
from anoncli.errors import AnoncliError
from anoncli.methods import MethodOptions, create_method
from anoncli.methods.mcadams import compiled_kernel_available

RATE = 16000
BACKENDS = ["torch"] + (["compiled"] if compiled_kernel_available() else [])


def voiced(seconds: float = 0.6, f0=(110.0, 190.0), formants=((700, 90), (1220, 110), (2600, 160)), seed=0):
    """Pulse train with a gliding F0 through second-order formant resonators, plus a little noise."""
    n = int(seconds * RATE)
    f0_track = np.linspace(f0[0], f0[1], n)
    phase = np.cumsum(f0_track / RATE)
    pulses = (np.diff(np.floor(phase), prepend=0.0) > 0).astype(np.float64)
    signal = pulses
    for freq, bandwidth in formants:
        radius = np.exp(-np.pi * bandwidth / RATE)
        theta = 2 * np.pi * freq / RATE
        signal = scipy.signal.lfilter([1.0 - radius], [1.0, -2 * radius * np.cos(theta), radius**2], signal)
    signal += 1e-4 * np.random.default_rng(seed).standard_normal(n)
    envelope = np.minimum(1.0, np.minimum(np.arange(n), n - np.arange(n)) / (0.05 * RATE))
    signal = signal * envelope
    return (0.5 * signal / np.abs(signal).max()).astype(np.float32)


def reference_mcadams(x: np.ndarray, alpha: float, win_len=320, shift=160, order=20, reach=50) -> np.ndarray:
    """The specification as a plain loop over frames (np.roots, np.poly, scipy lfilter).

    Each frame's output is scaled by sqrt(input / output energy), both after the
    synthesis window, summed over the frames within `reach` of it.
    """
    x = x.astype(np.float64)
    n = np.arange(win_len)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / win_len)
    window = np.sqrt(hann / (hann.sum() / shift))
    lead = win_len - shift
    n_frames = (lead + len(x) - 1) // shift + 1
    padded = np.zeros((n_frames - 1) * shift + win_len)
    padded[lead : lead + len(x)] = x
    shaped = np.zeros((n_frames, win_len))
    source = np.zeros(n_frames)
    for m in range(n_frames):
        frame = padded[m * shift : m * shift + win_len] * window
        source[m] = np.sum((frame * window) ** 2)
        if not frame.any():
            continue
        r = np.array([np.dot(frame[k:], frame[: win_len - k]) for k in range(order + 1)])
        r[0] *= 1 + 1e-9
        a = np.concatenate([[1.0], scipy.linalg.solve_toeplitz(r[:order], -r[1 : order + 1])])
        poles = np.roots(a)
        for i, pole in enumerate(poles):
            if abs(pole.imag) > 1e-8:
                angle = np.angle(pole)
                poles[i] = abs(pole) * np.exp(1j * np.sign(angle) * min(abs(angle) ** alpha, np.pi))
        b = np.real(np.poly(poles))
        shaped[m] = scipy.signal.lfilter(a, b, frame) * window
    produced = np.sum(shaped**2, axis=1)
    out = np.zeros_like(padded)
    for m in range(n_frames):
        near = slice(max(0, m - reach), m + reach + 1)
        s, q = source[near].sum(), produced[near].sum()
        out[m * shift : m * shift + win_len] += shaped[m] * (np.sqrt(s / q) if s > 0 and q > 0 else 1.0)
    return out[lead : lead + len(x)]


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    return 10 * np.log10(np.sum(reference**2) / max(np.sum((reference - estimate) ** 2), 1e-300))


def method(backend="auto", alpha=None, **options):
    extra = {"backend": backend} if alpha is None else {"backend": backend, "alpha": alpha}
    return create_method("mcadams", MethodOptions(extra=extra, **options))


def run(m, *waves, alpha=0.75):
    outs = m.process(
        [torch.from_numpy(np.asarray(w, dtype=np.float32)) for w in waves], [{"alpha": alpha}] * len(waves)
    )
    return [o.audio.numpy() for o in outs]


def utt(utt_id: str, speaker: str | None = None) -> Utterance:
    return Utterance(utt_id, Path(f"/corpus/{utt_id}.wav"), f"{utt_id}.wav", {"speaker": speaker})


@pytest.mark.parametrize("backend", BACKENDS + ["torch-aberth"])
@pytest.mark.parametrize("alpha", [0.55, 0.8, 1.3])
def test_matches_per_frame_reference(backend, alpha, monkeypatch):
    if backend == "torch-aberth":
        from anoncli.dsp import batched

        # The batched Aberth-Ehrlich root finder the GPU uses, run on the CPU.
        monkeypatch.setattr(batched, "CPU_ROOT_SOLVER", "aberth")
        backend = "torch"
    x = voiced()
    (y,) = run(method(backend), x, alpha=alpha)
    expected = reference_mcadams(x, alpha)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert snr_db(expected, y) > 60
    # and it really changed the voice
    assert snr_db(x.astype(np.float64), y) < 10


def test_backends_agree():
    if len(BACKENDS) < 2:
        pytest.skip("numba is not installed: only the torch backend exists here")
    x = voiced(seed=3)
    compiled, batched = run(method("compiled"), x)[0], run(method("torch"), x)[0]
    assert snr_db(compiled.astype(np.float64), batched) > 100


@pytest.mark.parametrize("backend", BACKENDS)
def test_levels_follow_the_input_across_blocks_of_frames(backend):
    """4.5 s (450 frames, several of the compiled kernel's 64-frame blocks): loud, 2 s of -60 dB noise, loud."""
    quiet = 1e-3 * np.random.default_rng(2).standard_normal(2 * RATE).astype(np.float32)
    x = np.concatenate([voiced(1.2, seed=5), quiet, voiced(1.3, f0=(200, 150), seed=6)])
    (y,) = run(method(backend), x, alpha=0.6)
    assert snr_db(reference_mcadams(x, 0.6), y) > 60
    middle = slice(int(1.9 * RATE), int(2.5 * RATE))
    assert (
        abs(10 * np.log10(np.sum(y[middle].astype(np.float64) ** 2) / np.sum(x[middle].astype(np.float64) ** 2))) < 1.5
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_alpha_one_gives_input_back(backend):
    x = voiced(0.3)
    (y,) = run(method(backend), x, alpha=1.0)
    assert np.max(np.abs(y - x)) < 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_equals_one_at_a_time(backend):
    m = method(backend)
    waves = [voiced(0.25, seed=1), voiced(0.61, f0=(210, 160), seed=2), voiced(0.03, seed=4)]
    batched = [
        o.audio
        for o in m.process([torch.from_numpy(w) for w in waves], [{"alpha": 0.6}, {"alpha": 0.7}, {"alpha": 0.8}])
    ]
    for wave, alpha, together in zip(waves, (0.6, 0.7, 0.8), batched):
        (alone,) = [o.audio for o in m.process([torch.from_numpy(wave)], [{"alpha": alpha}])]
        assert together.shape == alone.shape == (len(wave),)
        if backend == "compiled":
            assert torch.equal(together, alone)
        else:
            assert torch.allclose(together, alone, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_silence_and_degenerate_frames_stay_finite(backend):
    m = method(backend)
    silence = np.zeros(8000, np.float32)
    click = silence.copy()
    click[4000] = 0.9
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / RATE)).astype(np.float32)
    dc = np.full(4000, 0.2, np.float32)
    gap = np.concatenate([voiced(0.2), silence[:3000], voiced(0.2, seed=5)])
    outs = run(m, silence, click, tone, dc, gap)
    assert all(np.all(np.isfinite(o)) for o in outs)
    assert not outs[0].any(), "silence in must give silence out"
    assert not outs[4][3200 + 400 : 3200 + 3000 - 400].any(), "digital silence inside a file stays silent"
    assert np.std(outs[2]) > 0.05


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("length", [1, 7, 160, 319, 321])
def test_inputs_shorter_than_a_window(backend, length):
    x = np.random.default_rng(length).standard_normal(length).astype(np.float32) * 0.1
    (y,) = run(method(backend), x)
    assert y.shape == (length,) and np.all(np.isfinite(y))


def test_empty_input():
    assert run(method(), np.zeros(0, np.float32))[0].shape == (0,)


def test_alpha_drawn_per_utterance_reproducibly():
    m = method(seed=7)
    first = m.utterance_params(utt("spk1/a"))["alpha"]
    assert first == method(seed=7).utterance_params(utt("spk1/a"))["alpha"]
    assert first != m.utterance_params(utt("spk1/b"))["alpha"]
    assert first != method(seed=8).utterance_params(utt("spk1/a"))["alpha"]
    draws = [m.utterance_params(utt(f"u{i}"))["alpha"] for i in range(200)]
    assert 0.5 <= min(draws) and max(draws) <= 0.9 and np.std(draws) > 0.08


def test_same_seed_gives_bitwise_same_output():
    x = voiced(0.4)
    u = utt("spk1/a")
    outs = []
    for _ in range(2):
        m = method(seed=11)
        outs.append(m.process([torch.from_numpy(x)], [m.utterance_params(u)])[0].audio)
    assert torch.equal(outs[0], outs[1])


def test_per_speaker_alpha():
    m = method(seed=3, per_speaker=True)
    a1 = m.utterance_params(utt("x/1", "spk1"))["alpha"]
    assert a1 == m.utterance_params(utt("x/2", "spk1"))["alpha"]
    assert a1 != m.utterance_params(utt("x/1", "spk2"))["alpha"]


def test_fixed_alpha_and_its_bounds():
    assert method(alpha=0.66).utterance_params(utt("a"))["alpha"] == 0.66
    for bad in (0.0, -0.5, 3.0):
        with pytest.raises(AnoncliError, match="alpha"):
            method(alpha=bad)
    with pytest.raises(AnoncliError, match="backend"):
        method("fortran")


def test_config_is_recorded():
    config = method().config()
    assert config["window_ms"] == 20.0 and config["shift_ms"] == 10.0 and config["lpc_order"] == 20
    assert method().sample_rate == 16000


def test_root_finder_fallback_gives_the_same_frames(monkeypatch):
    """Frames whose Aberth iterations do not settle use companion-matrix eigenvalues instead."""
    from anoncli.dsp import batched
    from anoncli.dsp.framing import FrameLayout, pad_for_frames, sqrt_hann_window

    x = torch.from_numpy(voiced(0.2, seed=9)).double()
    window = sqrt_hann_window(320, 160)
    monkeypatch.setattr(batched, "CPU_ROOT_SOLVER", "aberth")  # the GPU's solver, here on the CPU
    normal = batched.mcadams_batch([x], [0.7], window, 160, 20)[0]
    monkeypatch.setattr(batched, "MAX_ABERTH_ITERATIONS", 2)
    fallback = batched.mcadams_batch([x], [0.7], window, 160, 20)[0]
    assert torch.allclose(fallback, normal, atol=1e-7 * normal.abs().max().item())
    if not compiled_kernel_available():
        return
    from anoncli.dsp.mcadams_kernel import _MAX_ITERATIONS, kernel_settings, mcadams_overlap_add

    layout = FrameLayout(len(x), 320, 160)
    padded = pad_for_frames(x, layout).numpy()
    outs = []
    for max_iterations in (50, 2):
        settings = kernel_settings()
        settings[_MAX_ITERATIONS] = max_iterations
        out = np.zeros_like(padded)
        fallbacks, _ = mcadams_overlap_add(padded, layout.n_frames, 160, window.numpy(), 20, 0.7, out, settings)
        outs.append((fallbacks, out))
    assert outs[0][0] == 0 and outs[1][0] > 0
    assert np.allclose(outs[1][1], outs[0][1], atol=1e-7 * np.abs(outs[0][1]).max())


def _db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2))


@pytest.mark.parametrize("backend", BACKENDS)
def test_output_level_follows_the_input_after_a_long_quiet_lead_in(backend):
    """25 s of -70 dBFS noise before quiet speech (-50 dBFS): both keep their level, and the speech its STOI.

    The new filters amplify noise-like frames far more than voiced ones, so
    one gain for the whole file raised the noise by 10-11 dB here and, the
    noise then holding much of the output's energy, lowered the speech by 4 dB.
    """
    from synth_audio import voiced as pulse_voice

    from anoncli.audio import resample
    from anoncli.scoring.stoi import RATE as STOI_RATE
    from anoncli.scoring.stoi import stoi

    rng = np.random.default_rng(0)
    noise = 10 ** (-70 / 20)
    pause = np.zeros(int(0.3 * RATE))
    speech = np.concatenate(
        [
            pulse_voice(1.2, RATE, 120.0, seed=1),
            pause,
            pulse_voice(1.2, RATE, 190.0, (850, 1600, 2900), seed=2),
            pause,
            pulse_voice(1.2, RATE, 140.0, (500, 1500, 2500), seed=3),
        ]
    )
    speech = speech / np.sqrt(np.mean(speech.astype(np.float64) ** 2)) * 10 ** (-50 / 20)
    speech = speech + rng.normal(0.0, noise, speech.size)
    lead = rng.normal(0.0, noise, 25 * RATE)
    m = method(backend)
    results = {}
    for name, lead_in in (("noise", lead), ("silence", np.zeros_like(lead))):
        x = np.concatenate([lead_in, speech]).astype(np.float32)
        (y,) = run(m, x, alpha=0.5)
        n = lead_in.size
        results[name] = (x, y, n)
        assert abs(_db(y[n:]) - _db(x[n:])) < 1.5, f"{name} lead-in: speech level changed"
        clean, processed = (resample(np.ascontiguousarray(s[n:]), RATE, STOI_RATE) for s in (x, y))
        results[name] += (stoi(clean, processed),)
    x, y, n, stoi_noise = results["noise"]
    for second in range(1, 24):  # every second of the lead-in but the one next to the speech
        part = slice(second * RATE, (second + 1) * RATE)
        assert abs(_db(y[part]) - _db(x[part])) < 1.5, f"noise level changed in second {second}"
    stoi_silence = results["silence"][3]
    assert stoi_silence > 0.3  # the speech part was scored, not skipped
    assert stoi_noise > stoi_silence - 0.02
