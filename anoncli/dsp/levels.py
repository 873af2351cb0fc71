"""Signal level in dBFS and the silence test that every per-utterance score shares."""

from __future__ import annotations

import numpy as np

SILENCE_DBFS = -60.0  # RMS below this (full scale = 0 dB) is treated as silence


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level of (n,) float samples in dB relative to full scale (1.0); -inf for digital silence or no samples."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return float("-inf")
    power = float(np.mean(x * x))
    return 10.0 * np.log10(power) if power > 0 else float("-inf")


def is_silent(samples: np.ndarray) -> bool:
    """True when the RMS level is below `SILENCE_DBFS` (or there are no samples)."""
    return rms_dbfs(samples) < SILENCE_DBFS
