"""Per-utterance privacy and utility scores of `anoncli anonymize`, computed batch by batch in its workers.

Build one `QuickScorer` per worker process (it loads the bundled resemblyzer
encoder once, ~1 s), then per batch:

1. `describe(waves)`: what every score needs from one 16 kHz wave, for many
   waves at once: the speaker embedding (one batched encoder forward for the
   whole list), the F0 track and the prosody statistics (`Side`). Originals'
   sides are cached per corpus file (`anoncli.scoring.original_cache`).
2. `score_pair(...)`: the scores of one (original, anonymized) pair from the
   two waves and their sides, plus the ASV enrolment and the label truths:

   privacy  link_cosine  cosine of the two embeddings (1: the same voice);
            asv_score    cosine of the anonymized embedding with the mean
                         embedding of other original utterances of its speaker
                         (ASV with enrolment on the original voice);
            {attr}_p_orig / {attr}_p_anon  probability that the shipped
                         attacker (`anoncli.scoring.attackers`) gives the true
                         class, on the original / the anonymized audio;
   utility  stoi, f0_r, duration_ratio, level_change_db (`signal_metrics`).

A score that cannot be computed is NaN, and `row_values` puts its reason in
the `score_notes` column ("asv_score: no speaker label; f0_r: unvoiced output").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anoncli.dsp.levels import is_silent
from anoncli.scoring import signal_metrics
from anoncli.scoring.attackers import Attacker, attacker_features
from anoncli.scoring.features import FEATURE_RATE, prosody_features

SCORE_COLUMNS = ("link_cosine",) + signal_metrics.PAIR_SCORES
NOTES_COLUMN = "score_notes"
SILENT = "silent"
NO_SPEAKER = "no speaker label"
NO_OTHER = "no other utterance of the speaker"
NO_ENROLMENT = "no usable enrolment utterance"
NO_LABEL = "no label"
NO_AUDIO = "feature output (no audio)"


def unknown_label(label: str) -> str:
    """The note of a label value the shipped attackers were not trained on."""
    return f"label {label!r} unknown to the attacker"


def p_columns(attribute: str) -> tuple[str, str]:
    """The manifest columns of an attribute: (`{attribute}_p_orig`, `{attribute}_p_anon`)."""
    return f"{attribute}_p_orig", f"{attribute}_p_anon"


@dataclass
class Side:
    """What the scores need from one 16 kHz wave (one side of a pair).

    embedding: (256,) L2-normalised resemblyzer embedding, None when `problem` is set;
    f0: (frames,) F0 in Hz per 10 ms frame, 0 where unvoiced (`anoncli.dsp.pitch.f0_track`);
    prosody: (17,) `anoncli.scoring.features.prosody_features`;
    problem: "silent" or "too short" (shorter than `signal_metrics.MIN_SECONDS`), or None.
    """

    embedding: np.ndarray | None
    f0: np.ndarray
    prosody: np.ndarray
    problem: str | None = None


def to_16k(samples, rate: int) -> np.ndarray:
    """(n,) float32 numpy mono wave at 16 kHz from samples (numpy array or torch tensor, any device) at `rate`."""
    from anoncli.audio import resample

    if hasattr(samples, "detach"):
        samples = samples.detach().cpu().numpy()
    wave = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
    return wave if int(rate) == FEATURE_RATE else np.asarray(resample(wave, int(rate), FEATURE_RATE), np.float32)


def side_problem(wave: np.ndarray) -> str | None:
    """ "too short" or "silent" for a 16 kHz wave no embedding can describe; None otherwise."""
    if len(wave) < signal_metrics.MIN_SECONDS * FEATURE_RATE:
        return signal_metrics.TOO_SHORT
    return SILENT if is_silent(wave) else None


def _sided(problem: str, side: str) -> str:
    return f"{problem} {side}" if problem == SILENT else problem


class QuickScorer:
    """The per-utterance scorer of one worker: resemblyzer on `device`, F0 and STOI on the CPU."""

    def __init__(self, device: str = "cpu", attackers: dict[str, Attacker] | None = None):
        from anoncli.scoring.embeddings import ResemblyzerBackend

        self.backend = ResemblyzerBackend(device)
        self.attackers = dict(attackers or {})  # attribute -> the attacker chosen for this corpus

    def describe(self, waves: list[np.ndarray]) -> list[Side]:
        """One `Side` per (n,) 16 kHz wave; the embeddings of all describable waves in one encoder call."""
        waves = [np.ascontiguousarray(w, dtype=np.float32).reshape(-1) for w in waves]
        problems = [side_problem(w) for w in waves]
        todo = [i for i, p in enumerate(problems) if p is None]
        embeddings = self.backend.embed([waves[i] for i in todo]) if todo else []
        by_index = dict(zip(todo, embeddings))
        sides = []
        for i, wave in enumerate(waves):
            f0 = signal_metrics.f0_track(wave, FEATURE_RATE)
            sides.append(Side(by_index.get(i), f0.astype(np.float32), prosody_features(wave, f0), problems[i]))
        return sides

    def score(self, original: np.ndarray, original_sr: int, anonymized: np.ndarray, anonymized_sr: int) -> dict:
        """{column: float} for `SCORE_COLUMNS` (NaN where a score cannot be computed) and
        `NOTES_COLUMN`: the reasons for those NaNs ("f0_r: unvoiced output; ..."), or None.

        original, anonymized: mono samples at their own rates; both are scored at 16 kHz.
        """
        a, b = to_16k(original, original_sr), to_16k(anonymized, anonymized_sr)
        sides = self.describe([a, b])
        scores = {
            name: value for name, value in self.score_pair(a, sides[0], b, sides[1]).items() if name in SCORE_COLUMNS
        }
        return row_values(scores)

    def score_pair(
        self,
        original: np.ndarray,
        original_side: Side,
        output: np.ndarray | None,
        output_side: Side | None,
        enrolment: np.ndarray | str | None = None,
        labels: dict[str, str | None] | None = None,
    ) -> dict[str, signal_metrics.Score]:
        """Every score of one pair as {column: Score}.

        original, output: (n,) 16 kHz waves (output None for a method that wrote
        features only: its audio scores are NaN, noted); enrolment: the mean
        (256,) embedding of the speaker's other original utterances, or the
        reason there is none (asv_score is omitted when None); labels:
        {attribute: true class as the attackers spell it, or None} for the
        attributes of `self.attackers` and any other attribute to note as unscored.
        """
        scores: dict[str, signal_metrics.Score] = {}
        if output is None or output_side is None:
            for name in ("link_cosine", "asv_score") if enrolment is not None else ("link_cosine",):
                scores[name] = signal_metrics.missing(NO_AUDIO)
            scores.update({name: signal_metrics.missing(NO_AUDIO) for name in signal_metrics.PAIR_SCORES})
        else:
            problem = signal_metrics.pair_problem(original, output, FEATURE_RATE, signal_metrics.MIN_SECONDS)
            scores["link_cosine"] = signal_metrics.link_cosine(original_side.embedding, output_side.embedding, problem)
            if enrolment is not None:
                scores["asv_score"] = _asv_score(output_side, enrolment)
            scores.update(signal_metrics.pair_scores(original, output, FEATURE_RATE, original_side.f0, output_side.f0))
        for attribute, label in (labels or {}).items():
            scores.update(self._attribute_scores(attribute, label, original_side, output_side))
        return scores

    def _attribute_scores(
        self, attribute: str, label: str | None, original: Side, output: Side | None
    ) -> dict[str, signal_metrics.Score]:
        column_orig, column_anon = p_columns(attribute)
        attacker = self.attackers.get(attribute)
        if label is None or attacker is None or label not in attacker.classes:
            reason = NO_LABEL if label is None else unknown_label(label)
            return {column_orig: signal_metrics.missing(reason), column_anon: signal_metrics.missing(reason)}
        result = {}
        for column, side, name in ((column_orig, original, "original"), (column_anon, output, "output")):
            if side is None:
                result[column] = signal_metrics.missing(NO_AUDIO)
            elif side.embedding is None:
                result[column] = signal_metrics.missing(_sided(side.problem or SILENT, name))
            else:
                features = attacker_features(side.embedding, side.prosody)
                result[column] = signal_metrics.Score(float(attacker.p_true(features[None], [label])[0]))
        return result


def _asv_score(output: Side, enrolment: np.ndarray | str) -> signal_metrics.Score:
    if isinstance(enrolment, str):
        return signal_metrics.missing(enrolment)
    if output.embedding is None:
        return signal_metrics.missing(_sided(output.problem or SILENT, "output"))
    centre = np.asarray(enrolment, np.float64)
    norm = float(np.linalg.norm(centre))
    if norm < 1e-12:
        return signal_metrics.missing(NO_ENROLMENT)
    return signal_metrics.Score(float(np.dot(np.asarray(output.embedding, np.float64), centre) / norm))


def enrolment_centre(sides: list[Side | None]) -> np.ndarray | str:
    """Mean embedding of the usable enrolment sides, or the reason there is none."""
    usable = [s.embedding for s in sides if s is not None and s.embedding is not None]
    if not sides:
        return NO_OTHER
    if not usable:
        return NO_ENROLMENT
    return np.mean(np.stack(usable), axis=0)


def row_values(scores: dict[str, float]) -> dict:
    """{column: float} plus `NOTES_COLUMN` (the reasons of the NaN scores, or None) for a manifest row."""
    row: dict = {name: float(value) for name, value in scores.items()}
    row[NOTES_COLUMN] = signal_metrics.score_notes(scores)
    return row
