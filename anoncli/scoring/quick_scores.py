"""Cheap per-utterance scores for `anoncli anonymize --score`: no attacker training needed.

Build one `QuickScorer` per worker process (it loads the bundled resemblyzer
encoder once, ~1 s) and call `score` on each (original, anonymized) pair.
"""

from __future__ import annotations

import numpy as np

from anoncli.scoring import signal_metrics
from anoncli.scoring.features import FEATURE_RATE

SCORE_COLUMNS = ("link_cosine",) + signal_metrics.PAIR_SCORES
NOTES_COLUMN = "score_notes"


def _to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    import torch

    from anoncli.audio import resample

    wave = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
    return resample(torch.from_numpy(wave), int(rate), FEATURE_RATE).numpy()


class QuickScorer:
    """link_cosine (resemblyzer original↔anonymized), STOI, F0 Pearson r, duration ratio and level change of one pair."""

    def __init__(self, device: str = "cpu"):
        from anoncli.scoring.embeddings import ResemblyzerBackend

        self.backend = ResemblyzerBackend(device)

    def score(self, original: np.ndarray, original_sr: int, anonymized: np.ndarray, anonymized_sr: int) -> dict:
        """{column: float} for `SCORE_COLUMNS` (NaN where a score cannot be computed) and
        `NOTES_COLUMN`: the reasons for those NaNs ("f0_r: unvoiced output; ..."), or None.

        original, anonymized: mono samples at their own rates; both are scored at 16 kHz.
        """
        a, b = _to_16k(original, original_sr), _to_16k(anonymized, anonymized_sr)
        problem = signal_metrics.pair_problem(a, b, FEATURE_RATE, signal_metrics.MIN_SECONDS)
        if problem:
            link = signal_metrics.missing(problem)
        else:
            emb = self.backend.embed([a, b])
            link = signal_metrics.link_cosine(emb[0], emb[1])
        scores = {"link_cosine": link}
        scores.update(signal_metrics.pair_scores(a, b, FEATURE_RATE))
        row: dict = {name: float(value) for name, value in scores.items()}
        row[NOTES_COLUMN] = signal_metrics.score_notes(scores)
        return row
