"""Synthetic test audio: voiced "speakers" with their own pitch and formants, plus broken files."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

SPEAKERS = {
    # speaker: (gender, f0 Hz, formants Hz)
    "spk_a": ("female", 210.0, (850, 1600, 2900)),
    "spk_b": ("male", 110.0, (650, 1100, 2450)),
    "spk_c": ("male", 125.0, (500, 1500, 2500)),
}


def voiced(
    duration_s: float,
    rate: int = 16000,
    f0: float = 120.0,
    formants=(700, 1200, 2600),
    seed: int = 0,
    depth: float = 0.08,
):
    """A pulse train with slowly varying pitch through three resonators: crude but speech-like for LPC.

    The pitch is f0·(1 + depth·sin(2π·1.5 Hz·t)); a negative depth mirrors the contour.
    """
    rng = np.random.default_rng(seed)
    n = max(1, int(duration_s * rate))
    t = np.arange(n) / rate
    pitch = f0 * (1.0 + depth * np.sin(2 * np.pi * 1.5 * t))
    phase = np.cumsum(pitch / rate)
    source = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float64)
    source += 0.01 * rng.standard_normal(n)
    out = source
    for freq in formants:
        r = np.exp(-np.pi * 80.0 / rate)
        out = lfilter([1.0], [1.0, -2 * r * np.cos(2 * np.pi * freq / rate), r * r], out)
    out /= np.max(np.abs(out)) + 1e-9
    envelope = np.minimum(1.0, np.minimum(t, t[-1] - t + 1e-3) / 0.02)
    return (0.5 * out * envelope).astype(np.float32)


def make_corpus(
    root: Path, per_speaker: int = 3, duration_s: float = 0.6, rate: int = 16000, metadata: bool = True
) -> Path:
    """A small labelled corpus: root/<speaker>/<speaker>_<i>.wav plus metadata.csv."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, (speaker, (gender, f0, formants)) in enumerate(SPEAKERS.items()):
        (root / speaker).mkdir(exist_ok=True)
        for i in range(per_speaker):
            rel = f"{speaker}/{speaker}_{i}.wav"
            wave = voiced(duration_s, rate, f0 * (1 + 0.03 * i), formants, seed=index * 100 + i)
            sf.write(root / rel, wave, rate, subtype="PCM_16")
            rows.append({"file_name": rel, "speaker": speaker, "gender": gender, "transcript": f"word {i}"})
    if metadata:
        with open(root / "metadata.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return root
