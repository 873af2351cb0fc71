"""Cheap per-utterance scores for `anoncli anonymize --score`: no attacker training needed.

Build one `QuickScorer` per worker process (it loads the bundled resemblyzer
encoder once, ~1 s) and call `score` on each (original, anonymized) pair.
"""

from __future__ import annotations

import numpy as np

from anoncli.scoring import signal_metrics
from anoncli.scoring.features import FEATURE_RATE

SCORE_COLUMNS = ("link_cosine", "stoi", "f0_r")


def _to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    import torch

    from anoncli.audio import resample

    wave = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
    return resample(torch.from_numpy(wave), int(rate), FEATURE_RATE).numpy()


class QuickScorer:
    """link_cosine (resemblyzer original↔anonymized), STOI and F0 Pearson r of one pair."""

    def __init__(self, device: str = "cpu"):
        from anoncli.scoring.embeddings import ResemblyzerBackend

        self.backend = ResemblyzerBackend(device)

    def score(self, original: np.ndarray, original_sr: int, anonymized: np.ndarray, anonymized_sr: int) -> dict[str, float]:
        a, b = _to_16k(original, original_sr), _to_16k(anonymized, anonymized_sr)
        emb = self.backend.embed([a, b])
        return {
            "link_cosine": float(emb[0] @ emb[1]),
            "stoi": signal_metrics.stoi(a, b, FEATURE_RATE),
            "f0_r": signal_metrics.f0_correlation(a, b, FEATURE_RATE),
        }
