"""Signal level in dBFS and the silence test that every per-utterance score shares."""

from __future__ import annotations

import numpy as np

SILENCE_DBFS = -60.0  # a signal whose loudest frame has an RMS below this (full scale = 0 dB) is silence
SILENCE_FRAME = 512  # samples per frame of that test (32 ms at 16 kHz)


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level of (n,) float samples in dB relative to full scale (1.0); -inf for digital silence or no samples."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return float("-inf")
    power = float(np.mean(x * x))
    return 10.0 * np.log10(power) if power > 0 else float("-inf")


def _frame_powers(x: np.ndarray, hop: int) -> np.ndarray:
    """Mean power of each whole, non-overlapping `hop`-sample frame of (n,) float64 `x`: (n // hop,)."""
    frames = x.size // hop
    return np.mean(x[: frames * hop].reshape(frames, hop) ** 2, axis=1)


def loudest_frame_dbfs(samples: np.ndarray, frame: int = SILENCE_FRAME) -> float:
    """RMS level (dBFS) of the loudest of the non-overlapping `frame`-sample frames of (n,) samples.

    The samples after the last whole frame count as one more frame (a signal shorter
    than one frame is one frame); -inf for digital silence or no samples.
    """
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return float("-inf")
    powers = _frame_powers(x, frame)
    tail = x[powers.size * frame :]
    power = max(float(powers.max()) if powers.size else 0.0, float(np.mean(tail * tail)) if tail.size else 0.0)
    return 10.0 * np.log10(power) if power > 0 else float("-inf")


def is_silent(samples: np.ndarray) -> bool:
    """True when even the loudest frame (`SILENCE_FRAME` samples) is below `SILENCE_DBFS`, or there are no samples.

    The loudest frame, not the whole signal: a quiet recording with long pauses
    (whole-file RMS -64 dBFS, speech peaks at -42 dBFS) is speech, not silence.
    """
    return loudest_frame_dbfs(samples) < SILENCE_DBFS


def active_span(
    samples: np.ndarray, sample_rate: int, floor_db: float = -40.0, margin_s: float = 0.3, frame_s: float = 0.01
) -> tuple[int, int]:
    """Sample range [start, stop) from the first to the last frame within `floor_db` of the loudest frame.

    samples: (n,) float or int; frames of `frame_s` seconds, power in dB; the span is widened by
    `margin_s` seconds on each side and clipped to the signal. Returns (0, n) for digital
    silence or a signal shorter than one frame, so that nothing is ever dropped from those.
    """
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    n = x.size
    hop = max(1, int(round(frame_s * sample_rate)))
    power = _frame_powers(x, hop)
    frames = power.size
    if frames == 0:
        return 0, n
    if not np.any(power > 0):
        return 0, n
    level = 10.0 * np.log10(np.maximum(power, np.finfo(np.float64).tiny))
    active = np.flatnonzero(level > level.max() + floor_db)
    margin = int(round(margin_s * sample_rate))
    start = max(0, int(active[0]) * hop - margin)
    stop = min(n, (int(active[-1]) + 1) * hop + margin)
    if active[-1] == frames - 1:
        stop = n  # the loud part reaches the partial last frame: keep it
    return start, stop
