"""Per-utterance signal measures that need no model: STOI, F0 correlation, level change, LSD, duration ratio, SDR.

Every function takes float32 mono arrays at one common sample rate (the caller
resamples); differing lengths are handled by truncating to the shorter one,
except the F0 correlation, which aligns the two F0 tracks first
(`anoncli.dsp.pitch`).

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

from typing import Mapping

import numpy as np

from anoncli.dsp import pitch
from anoncli.dsp.levels import is_silent, rms_dbfs

STOI_RATE = 10000           # STOI's rate; resampling ourselves avoids pystoi's slow resampler
MIN_SECONDS = 0.25          # shorter pairs get no STOI or link cosine: pystoi needs a few 384-ms segments
SILENT = "silent"
TOO_SHORT = "too short"
EMPTY = "empty original"
SIDES = ("original", "output")
PAIR_SCORES = ("stoi", "f0_r", "duration_ratio", "level_change_db")


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


def missing(note: str) -> Score:
    """A NaN score with its reason."""
    return Score(float("nan"), note)


def pair_problem(reference: np.ndarray, processed: np.ndarray, sample_rate: int,
                 min_seconds: float = 0.0) -> str | None:
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
    """"stoi: too short; f0_r: unvoiced output" for the NaN scores of one row that carry a note; None when none do."""
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


def stoi(reference: np.ndarray, processed: np.ndarray, sample_rate: int) -> Score:
    """Short-time objective intelligibility (0..1) of `processed` against `reference` (Taal et al. 2011).

    `anoncli.scoring.stoi`: pystoi's classical STOI, vectorised. NaN with a
    note for a silent side or a pair shorter than `MIN_SECONDS`, or when
    fewer than 30 non-silent frames remain ("too short": pystoi would return 1e-5).
    """
    from anoncli.scoring import stoi as stoi_mod

    problem = pair_problem(reference, processed, sample_rate, MIN_SECONDS)
    if problem:
        return missing(problem)
    ref = _to_rate(reference, sample_rate, STOI_RATE)
    proc = _to_rate(processed, sample_rate, STOI_RATE)
    ref, proc = _truncate(ref, proc)
    try:
        return Score(stoi_mod.stoi(ref, proc))
    except stoi_mod.TooShort:
        return missing(TOO_SHORT)


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
    return Score(float(np.dot(np.asarray(original_embedding, np.float64), np.asarray(anonymized_embedding, np.float64))))


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


def pair_scores(reference: np.ndarray, processed: np.ndarray, sample_rate: int,
                f0_reference: np.ndarray | None = None, f0_processed: np.ndarray | None = None) -> dict[str, Score]:
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
