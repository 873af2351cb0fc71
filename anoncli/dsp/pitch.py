"""F0 tracking, and the F0 Pearson correlation of an utterance and its processed version.

Tracker (`f0_track`): WORLD's DIO refined by StoneMask (`pyworld`; Morise et
al., IEICE Trans. Inf. & Syst. E99-D(7), 2016), 10 ms frames, 75–500 Hz (the
VoicePrivacy 2022 settings), DIO on a copy resampled to 4 kHz (`DIO_RATE_HZ`)
and StoneMask on the input, then a clean-up pass: voiced runs shorter than
`MIN_RUN_FRAMES` are dropped (spurious voicing at onsets and in fricatives),
and a 3-frame median filter inside each voiced run removes single-frame
jitter and one-frame octave blips.

Octave errors (`f0_correlation_from_tracks`). DIO, like every fast tracker,
sometimes reports twice or half the true pitch over a stretch of frames;
anonymization that weakens the fundamental (McAdams raises the first formant)
makes it do so far more often on the processed side. One track on its own
cannot tell such a stretch from real intonation: emotional speech easily
spans an octave and a half, and folding frames towards the utterance's median
breaks more correct tracks than it mends (measured on emodb-dev). Two tracks
of the same utterance can: over the co-voiced frames, the processed/reference
log2 ratio minus its median (the pair's overall pitch shift) stays well
inside ±0.5 octave where both trackers are right, and sits near a whole
number of octaves where one of them jumped. Frames further than
`OCTAVE_TOLERANCE` from the median shift are moved by whole octaves back to
it before r is computed, and counted (`F0Correlation.octave_errors`), so r
measures the intonation contour and the octave jumps are reported beside it.
A method that really moved part of an utterance by an octave is therefore not
penalised in r; its `octave_errors` count shows it.

Alignment: tracks of equal length are compared frame by frame (lag 0).
Otherwise every lag from 0 and the length difference, ±`MAX_EXTRA_LAG_FRAMES`,
whose overlap keeps at least half of the best overlap's co-voiced frames is
tried, and the lag where the tracks agree best (highest r) wins, the smallest
shift on ties — not the lag with the most co-voiced frames, which lands a few
frames off on speech and turns a perfect match negative.

A correlation that cannot be computed is NaN with the reason in
`F0Correlation.note`: "too short", "silent original"/"silent output",
"unvoiced original"/"unvoiced output" (fewer than `MIN_CO_VOICED_FRAMES`
voiced frames), "too few co-voiced frames", "flat F0".
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from anoncli.dsp.levels import is_silent

FRAME_MS = 10.0
FLOOR_HZ = 75.0
CEIL_HZ = 500.0
MIN_RUN_FRAMES = 3  # voiced runs shorter than this (< 30 ms) are spurious
OCTAVE_TOLERANCE = 0.5  # octaves from the pair's median shift before a frame counts as an octave error
MIN_CO_VOICED_FRAMES = 10  # 100 ms of pitch in both tracks, or no r
MAX_EXTRA_LAG_FRAMES = 10  # lag search beyond the length difference (±100 ms)
MIN_SAMPLES = 1024  # DIO needs a few pitch periods: 64 ms at 16 kHz
DIO_RATE_HZ = 4000  # DIO runs on a copy resampled to this rate (F0 <= 500 Hz); StoneMask on the input

TOO_SHORT = "too short"
SILENT = "silent"
UNVOICED = "unvoiced"
FEW_CO_VOICED = "too few co-voiced frames"
FLAT = "flat F0"
SIDES = ("original", "output")


class F0Correlation(NamedTuple):
    """Result of `f0_correlation`: Pearson r and how it was obtained.

    r: Pearson correlation of the co-voiced F0 values (Hz), NaN when it cannot be computed;
    lag: frames the processed track was shifted (positive: it is later);
    co_voiced: frames r was computed over;
    octave_errors: co-voiced frames moved by whole octaves before correlating;
    note: why r is NaN (None when r is a number).
    """

    r: float
    lag: int = 0
    co_voiced: int = 0
    octave_errors: int = 0
    note: str | None = None


def _voiced_runs(voiced: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in a boolean array."""
    edges = np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def clean_track(f0: np.ndarray) -> np.ndarray:
    """The clean-up pass above on an F0 track in Hz (0 = unvoiced); returns a new float64 array."""
    f0 = np.asarray(f0, dtype=np.float64).copy()
    f0[~np.isfinite(f0) | (f0 < FLOOR_HZ) | (f0 > CEIL_HZ)] = 0.0
    for start, stop in _voiced_runs(f0 > 0):
        if stop - start < MIN_RUN_FRAMES:
            f0[start:stop] = 0.0
            continue
        run = f0[start:stop]
        f0[start:stop] = np.median(np.stack([np.r_[run[0], run[:-1]], run, np.r_[run[1:], run[-1]]]), axis=0)
    return f0


def n_frames(n_samples: int, sample_rate: int) -> int:
    """Frames of a track of `n_samples` at `sample_rate` (as DIO counts them)."""
    return int(n_samples * 1000.0 / FRAME_MS // sample_rate) + 1


def raw_f0_track(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """DIO + StoneMask F0 in Hz per 10 ms frame (0 where unvoiced), before the clean-up pass.

    samples: (n,) mono float at `sample_rate` Hz; returns float64 (`n_frames(n, rate)`,).
    """
    import pyworld

    x = np.ascontiguousarray(np.asarray(samples).reshape(-1), dtype=np.float64)
    # DIO's filter bank on a 4 kHz copy is 3.8x cheaper than at 16 kHz, with the same F0 r on emodb-dev's
    # McAdams pairs and the synthetic contours of tests/test_pitch.py (DIO's own `speed` decimation,
    # by contrast, loses some of them); StoneMask then refines each frame on the full-rate input.
    count = n_frames(len(x), sample_rate)
    if sample_rate > DIO_RATE_HZ:
        import soxr

        low = np.ascontiguousarray(soxr.resample(x, sample_rate, DIO_RATE_HZ), dtype=np.float64)
        f0, _ = pyworld.dio(low, DIO_RATE_HZ, f0_floor=FLOOR_HZ, f0_ceil=CEIL_HZ, frame_period=FRAME_MS)
        f0 = np.pad(f0, (0, max(0, count - len(f0))))[:count]
        times = np.arange(count) * (FRAME_MS / 1000.0)
    else:
        f0, times = pyworld.dio(x, sample_rate, f0_floor=FLOOR_HZ, f0_ceil=CEIL_HZ, frame_period=FRAME_MS)
    f0 = pyworld.stonemask(x, f0, times, sample_rate)
    f0[(f0 < FLOOR_HZ) | (f0 > CEIL_HZ)] = 0.0
    return f0


def f0_track(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """F0 in Hz per 10 ms frame (0 where unvoiced): DIO + StoneMask, then `clean_track`.

    samples: (n,) mono float at `sample_rate` Hz; returns float64 (`n_frames(n, rate)`,),
    frame i centred at i·10 ms. Input shorter than `MIN_SAMPLES` or silent
    gives an all-unvoiced track.
    """
    x = np.asarray(samples).reshape(-1)
    if len(x) < MIN_SAMPLES or is_silent(x):
        return np.zeros(n_frames(len(x), sample_rate))
    return clean_track(raw_f0_track(x, sample_rate))


def _co_voiced(f0_ref: np.ndarray, f0_proc: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Co-voiced (reference, processed) values with the processed track shifted `lag` frames later."""
    a, b = (f0_ref, f0_proc[lag:]) if lag >= 0 else (f0_ref[-lag:], f0_proc)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    both = (a > 0) & (b > 0)
    return a[both], b[both]


def _octave_reconciled(ref: np.ndarray, proc: np.ndarray) -> tuple[np.ndarray, int]:
    """`proc` with frames more than `OCTAVE_TOLERANCE` off the median shift moved by whole octaves; count moved."""
    deviation = np.log2(proc) - np.log2(ref)
    deviation -= np.median(deviation)
    octaves = np.where(np.abs(deviation) > OCTAVE_TOLERANCE, np.round(deviation), 0.0)
    return proc * np.exp2(-octaves), int(np.count_nonzero(octaves))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denominator = np.sqrt(np.dot(a, a) * np.dot(b, b))
    return float(np.dot(a, b) / denominator) if denominator > 1e-12 * max(len(a), 1) else float("nan")


def f0_correlation_from_tracks(f0_ref: np.ndarray, f0_proc: np.ndarray) -> F0Correlation:
    """Pearson r of two F0 tracks (Hz per 10 ms frame, 0 = unvoiced) over their co-voiced frames.

    Aligned by agreement and octave errors reconciled as the module docstring
    says. NaN with a note when a track has fewer than `MIN_CO_VOICED_FRAMES`
    voiced frames, the best overlap has fewer co-voiced frames than that, or
    either track is flat over them.
    """
    f0_ref = np.asarray(f0_ref, dtype=np.float64).reshape(-1)
    f0_proc = np.asarray(f0_proc, dtype=np.float64).reshape(-1)
    for track, side in zip((f0_ref, f0_proc), SIDES):
        voiced = int(np.count_nonzero(track > 0))
        if voiced < MIN_CO_VOICED_FRAMES:
            return F0Correlation(float("nan"), co_voiced=voiced, note=f"{UNVOICED} {side}")
    diff = len(f0_proc) - len(f0_ref)
    lags = (
        [0]
        if diff == 0
        else sorted(
            range(min(0, diff) - MAX_EXTRA_LAG_FRAMES, max(0, diff) + MAX_EXTRA_LAG_FRAMES + 1),
            key=lambda lag: (abs(lag), lag),
        )
    )
    overlaps = {lag: _co_voiced(f0_ref, f0_proc, lag) for lag in lags}
    most = max(len(a) for a, _ in overlaps.values())
    if most < MIN_CO_VOICED_FRAMES:
        return F0Correlation(float("nan"), co_voiced=most, note=FEW_CO_VOICED)
    best = None
    for lag in lags:  # smallest shift first, so it wins ties
        ref, proc = overlaps[lag]
        if len(ref) < max(MIN_CO_VOICED_FRAMES, most / 2):
            continue
        proc, moved = _octave_reconciled(ref, proc)
        r = _pearson(ref, proc)
        if best is None or (np.isfinite(r) and not r <= best.r):
            best = F0Correlation(r, lag, len(ref), moved, None if np.isfinite(r) else FLAT)
    return best


def f0_correlation(reference: np.ndarray, processed: np.ndarray, sample_rate: int) -> F0Correlation:
    """F0 Pearson r of `processed` against `reference`, both (n,) mono float at `sample_rate` Hz.

    `f0_track` of each, then `f0_correlation_from_tracks`; besides its notes,
    "too short" (fewer than `MIN_SAMPLES` samples) and "silent original" /
    "silent output" (`anoncli.dsp.levels.is_silent`).
    """
    waves = [np.asarray(x).reshape(-1) for x in (reference, processed)]
    if min(len(x) for x in waves) < MIN_SAMPLES:
        return F0Correlation(float("nan"), note=TOO_SHORT)
    for x, side in zip(waves, SIDES):
        if is_silent(x):
            return F0Correlation(float("nan"), note=f"{SILENT} {side}")
    return f0_correlation_from_tracks(*(f0_track(x, sample_rate) for x in waves))
