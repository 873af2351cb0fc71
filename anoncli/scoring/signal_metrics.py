"""Per-utterance signal measures that need no model: STOI, F0 correlation, level change, LSD, duration ratio, SDR.

Every function takes float32 mono arrays at one common sample rate (the caller
resamples); differing lengths are handled by truncating to the shorter one,
except STOI and the F0 correlation, which align the pair first: the F0
correlation its two F0 tracks (`anoncli.dsp.pitch`), STOI the two signals by
their short-time energy envelopes (`stoi_lag`), over the same lags as F0 r
(0 for equal lengths; else 0 to the length difference, ±`MAX_EXTRA_LAG_S`).

A per-utterance score that cannot be computed is never a stand-in number:
`stoi`, `f0_correlation`, `f0_correlation_from_tracks`, `level_change_db`,
`duration_ratio` and `link_cosine` return a `Score`, a float that is NaN
when the pair cannot be scored and then carries the reason in `.note`
("silent original", "silent output", "too short", "unvoiced output", ...).
`pair_scores` computes the utility scores of a pair in one call, and
`score_notes` joins the reasons of a row into one text for a `score_notes`
column.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from anoncli.dsp import pitch
from anoncli.dsp.levels import is_silent, rms_dbfs

STOI_RATE = 10000  # STOI's rate; resampling ourselves avoids pystoi's slow resampler
MIN_SECONDS = 0.25  # shorter pairs get no STOI or link cosine: pystoi needs a few 384-ms segments
SILENT = "silent"
TOO_SHORT = "too short"
EMPTY = "empty original"
SIDES = ("original", "output")
PAIR_SCORES = ("stoi", "f0_r", "duration_ratio", "level_change_db")
MAX_EXTRA_LAG_S = pitch.MAX_EXTRA_LAG_FRAMES * pitch.FRAME_MS / 1000  # lag search beyond the length difference
ENVELOPE_WINDOW = 256  # samples at STOI_RATE: STOI's 25.6-ms frame
ENVELOPE_HOP = 20  # samples at STOI_RATE: the lag's resolution (2 ms)
SAME_LENGTH_MAX_LAG_S = 1.0  # equal-length pairs: lags searched either way (s)
SAME_LENGTH_MARGIN = 0.1  # equal-length pairs: how much better than lag 0 a shift's envelope r must be
ENVELOPE_RANGE_DB = 60  # envelope floor below its loudest frame: silence does not steer the alignment


class Score(float):
    """A per-utterance score: a plain float, NaN when it could not be computed, with `note` saying why.

    `note` is None for a real value. Arithmetic gives plain floats; read
    `note` (or call `score_notes`) before storing the value in an array.
    """

    note: str | None

    def __new__(cls, value: float, note: str | None = None) -> Score:
        self = super().__new__(cls, value)
        self.note = note
        return self

    def __reduce__(self):
        return (Score, (float(self), self.note))

    def __repr__(self) -> str:
        return f"Score({float(self)!r}, note={self.note!r})"


class AlignedScore(Score):
    """A `Score` measured after aligning the pair; `lag_s` is how far the processed signal was shifted to
    match the reference, in seconds (positive: the processed one is later)."""

    lag_s: float

    def __new__(cls, value: float, note: str | None = None, lag_s: float = 0.0) -> AlignedScore:
        self = super().__new__(cls, value, note)
        self.lag_s = lag_s
        return self

    def __reduce__(self):
        return (AlignedScore, (float(self), self.note, self.lag_s))

    def __repr__(self) -> str:
        return f"AlignedScore({float(self)!r}, note={self.note!r}, lag_s={self.lag_s!r})"


def missing(note: str) -> Score:
    """A NaN score with its reason."""
    return Score(float("nan"), note)


def pair_problem(
    reference: np.ndarray, processed: np.ndarray, sample_rate: int, min_seconds: float = 0.0
) -> str | None:
    """Why a pair of waves cannot be scored, or None: "silent original", "silent output" or "too short".

    "too short": either side is shorter than `min_seconds`; silence: even the loudest
    frame's RMS is below `anoncli.dsp.levels.SILENCE_DBFS` (`anoncli.dsp.levels.is_silent`).
    """
    if min(len(reference), len(processed)) < max(1, min_seconds * sample_rate):
        return TOO_SHORT
    for wave, side in zip((reference, processed), SIDES):
        if is_silent(wave):
            return f"{SILENT} {side}"
    return None


def score_notes(scores: Mapping[str, float]) -> str | None:
    """ "stoi: too short; f0_r: unvoiced output" for the NaN scores of one row that carry a note; None when none do."""
    notes = [f"{name}: {value.note}" for name, value in scores.items() if isinstance(value, Score) and value.note]
    return "; ".join(notes) or None


def _truncate(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = min(len(a), len(b))
    return a[:n], b[:n]


def _to_rate(samples: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    if rate == new_rate:
        return samples
    from anoncli.audio import resample

    return resample(np.ascontiguousarray(samples, dtype=np.float32), rate, new_rate)


def _log_envelope(x: np.ndarray) -> np.ndarray:
    """Energy in dB of `ENVELOPE_WINDOW`-sample frames every `ENVELOPE_HOP` samples, floored `ENVELOPE_RANGE_DB`
    below the loudest frame."""
    energy = np.cumsum(np.square(np.asarray(x, np.float64)))
    if len(energy) <= ENVELOPE_WINDOW:
        return np.zeros(0)
    power = (energy[ENVELOPE_WINDOW:] - energy[:-ENVELOPE_WINDOW])[::ENVELOPE_HOP]
    db = 10 * np.log10(np.maximum(power, 1e-20))
    return np.maximum(db, db.max() - ENVELOPE_RANGE_DB)


def stoi_lag(reference: np.ndarray, processed: np.ndarray, sample_rate: int = STOI_RATE) -> int:
    """Samples (at `sample_rate`) by which `processed` is later than `reference`: the lag STOI is computed at.

    As F0 r aligns its tracks (`anoncli.dsp.pitch`): every lag from 0 to the
    length difference, ±`MAX_EXTRA_LAG_S`, in steps of `ENVELOPE_HOP` samples at 10 kHz, whose
    overlap keeps at least half of the shorter signal, is tried, and the one
    where the two log-energy envelopes correlate best (Pearson r) wins, the
    smallest shift on ties. Equal lengths (a delay padded inside the same
    length) search ±`SAME_LENGTH_MAX_LAG_S`, and a shift is taken only when
    its r beats lag 0's by `SAME_LENGTH_MARGIN` (and `stoi` keeps it only when
    STOI there beats STOI at lag 0). Energy envelopes, not
    waveforms, so a changed voice with the same timing aligns as well as a copy.
    """
    diff = len(processed) - len(reference)
    scale = STOI_RATE / sample_rate
    env_ref = _log_envelope(_to_rate(reference, sample_rate, STOI_RATE))
    env_proc = _log_envelope(_to_rate(processed, sample_rate, STOI_RATE))
    same_length = diff == 0
    extra = int(round((SAME_LENGTH_MAX_LAG_S if same_length else MAX_EXTRA_LAG_S) * STOI_RATE / ENVELOPE_HOP))
    steps = int(round(diff * scale / ENVELOPE_HOP))
    lags = sorted(range(min(0, steps) - extra, max(0, steps) + extra + 1), key=lambda lag: (abs(lag), lag))
    shortest = min(len(env_ref), len(env_proc))
    best_lag, best_r, r_zero = 0, -np.inf, -np.inf
    for lag in lags:  # smallest shift first, so it wins ties
        a, b = (env_ref, env_proc[lag:]) if lag >= 0 else (env_ref[-lag:], env_proc)
        n = min(len(a), len(b))
        if n < max(2, shortest / 2):
            continue
        a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
        denominator = np.sqrt(np.dot(a, a) * np.dot(b, b))
        r = np.dot(a, b) / denominator if denominator > 0 else -np.inf
        if lag == 0:
            r_zero = r
        if r > best_r:
            best_lag, best_r = lag, r
    if same_length and best_lag != 0 and best_r < r_zero + SAME_LENGTH_MARGIN:
        return 0  # a length-keeping method is compared where it stands unless a shift is clearly better
    return int(round(best_lag * ENVELOPE_HOP / scale))


def _shifted(reference: np.ndarray, processed: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """The pair with `processed` moved `lag` samples earlier (later when negative), truncated to the overlap."""
    return _truncate(reference, processed[lag:]) if lag >= 0 else _truncate(reference[-lag:], processed)


def stoi(reference: np.ndarray, processed: np.ndarray, sample_rate: int) -> AlignedScore:
    """Short-time objective intelligibility (0..1) of `processed` against `reference` (Taal et al. 2011).

    `anoncli.scoring.stoi`: pystoi's classical STOI, vectorised, at the lag
    `stoi_lag` finds (its `lag_s`; a copy delayed by 0.5 s scores 1, not
    about 0). NaN with a note for a silent side or a pair shorter than
    `MIN_SECONDS`, or when fewer than 30 non-silent frames of the aligned
    overlap remain ("too short": pystoi would return 1e-5).
    """
    from anoncli.scoring import stoi as stoi_mod

    problem = pair_problem(reference, processed, sample_rate, MIN_SECONDS)
    if problem:
        return AlignedScore(float("nan"), problem, float("nan"))
    ref = _to_rate(reference, sample_rate, STOI_RATE)
    proc = _to_rate(processed, sample_rate, STOI_RATE)
    lag = stoi_lag(ref, proc)
    # equal lengths: a shift found on the envelopes must also beat lag 0 on STOI itself (a steady sound's
    # envelope correlates about as well at any shift)
    candidates = [lag, 0] if lag != 0 and len(ref) == len(proc) else [lag]
    best: AlignedScore | None = None
    for shift in candidates:
        a, b = _shifted(ref, proc, shift)
        try:
            score = AlignedScore(stoi_mod.stoi(a, b), None, shift / STOI_RATE)
        except stoi_mod.TooShort:
            score = AlignedScore(float("nan"), TOO_SHORT, shift / STOI_RATE)
        if best is None or (np.isfinite(score) and not float(best) >= float(score)):
            best = score
    return best


def f0_track(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """F0 in Hz per 10 ms frame (0 where unvoiced): `anoncli.dsp.pitch.f0_track`."""
    return pitch.f0_track(samples, sample_rate)


def _from_pitch(result: pitch.F0Correlation) -> Score:
    return Score(result.r, result.note)


def f0_correlation_from_tracks(f0_ref: np.ndarray, f0_proc: np.ndarray) -> Score:
    """F0 Pearson r of two tracks from `f0_track`: `anoncli.dsp.pitch.f0_correlation_from_tracks` as a `Score`."""
    return _from_pitch(pitch.f0_correlation_from_tracks(f0_ref, f0_proc))


def f0_correlation(reference: np.ndarray, processed: np.ndarray, sample_rate: int) -> Score:
    """F0 Pearson r of `processed` against `reference`: `anoncli.dsp.pitch.f0_correlation` as a `Score`."""
    return _from_pitch(pitch.f0_correlation(reference, processed, sample_rate))


def level_change_db(reference: np.ndarray, processed: np.ndarray) -> Score:
    """RMS level of `processed` minus that of `reference`, in dB (0: same loudness); NaN if either is silent."""
    problem = pair_problem(reference, processed, 1)
    if problem:
        return missing(problem)
    return Score(rms_dbfs(processed) - rms_dbfs(reference))


def link_cosine(original_embedding: np.ndarray, anonymized_embedding: np.ndarray, problem: str | None = None) -> Score:
    """Cosine of two L2-normalised speaker embeddings (1: the same voice); NaN with `problem` when one is given.

    Pass `pair_problem(original, anonymized, rate, MIN_SECONDS)` as `problem`:
    the embedding of silence or of a few frames is a vector like any other,
    and its cosine (1.0 for two silences) says nothing about the speaker.
    """
    if problem:
        return missing(problem)
    return Score(
        float(np.dot(np.asarray(original_embedding, np.float64), np.asarray(anonymized_embedding, np.float64)))
    )


def log_spectral_distance(reference: np.ndarray, processed: np.ndarray, sample_rate: int) -> float:
    """Mean over frames of the RMS difference of the dB power spectra (dB); 0 for identical signals."""
    ref, proc = _truncate(reference, processed)
    n_fft = 512 if sample_rate >= 16000 else 256
    hop = n_fft // 4
    if len(ref) < n_fft:
        return float("nan")
    window = np.hanning(n_fft).astype(np.float32)

    def power(x: np.ndarray) -> np.ndarray:
        """Power spectra of Hann-windowed frames, shape (frames, n_fft // 2 + 1)."""
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


def duration_ratio(reference_seconds: float, processed_seconds: float) -> Score:
    """Processed duration over original duration (1: same length); NaN ("empty original") for an empty original."""
    return Score(processed_seconds / reference_seconds) if reference_seconds > 0 else missing(EMPTY)


def pair_scores(
    reference: np.ndarray,
    processed: np.ndarray,
    sample_rate: int,
    f0_reference: np.ndarray | None = None,
    f0_processed: np.ndarray | None = None,
) -> dict[str, Score]:
    """The utility scores of one pair: {"stoi", "f0_r", "duration_ratio", "level_change_db"} -> `Score`.

    reference, processed: (n,) mono float at `sample_rate` Hz; f0_reference /
    f0_processed: their `f0_track`s when already computed (e.g. cached).
    """
    if f0_reference is None or f0_processed is None:
        f0_r = f0_correlation(reference, processed, sample_rate)
    else:
        problem = pair_problem(reference, processed, sample_rate, pitch.MIN_SAMPLES / sample_rate)
        f0_r = missing(problem) if problem else f0_correlation_from_tracks(f0_reference, f0_processed)
    return {
        "stoi": stoi(reference, processed, sample_rate),
        "f0_r": f0_r,
        "duration_ratio": duration_ratio(len(reference) / sample_rate, len(processed) / sample_rate),
        "level_change_db": level_change_db(reference, processed),
    }


def sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Plain signal-to-distortion ratio 10·log10(Σs² / Σ(s − ŝ)²) in dB over the aligned (shorter) length."""
    n = min(len(reference), len(estimate))
    ref, est = np.asarray(reference[:n], np.float64), np.asarray(estimate[:n], np.float64)
    err = np.sum((ref - est) ** 2)
    return float(10 * np.log10((np.sum(ref**2) + 1e-12) / (err + 1e-12)))
