"""A tiny labelled synthetic corpus and tiny training configs for the GAN tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000


def voice(f0: float, seconds: float, seed: int, bright: float) -> np.ndarray:
    """A pulse-train-like harmonic 'voice' with a formant-ish tilt, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    wave = sum((bright**k) * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.28)) for k in range(1, 12))
    wave = wave * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
    wave = wave + 0.01 * rng.standard_normal(t.shape)
    return (0.3 * wave / np.max(np.abs(wave))).astype(np.float32)


def make_corpus(root: Path, per_speaker: int = 4) -> Path:
    """4 speakers (2 per gender), two emotions; odd lengths on purpose."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    speakers = [("s1", "male", 110.0), ("s2", "female", 220.0), ("s3", "male", 130.0), ("s4", "female", 250.0)]
    for si, (speaker, gender, f0) in enumerate(speakers):
        for k in range(per_speaker):
            emotion = "angry" if k % 2 else "calm"
            seconds = 0.55 + 0.13 * k + 0.05 * si
            wave = voice(
                f0 * (1.15 if emotion == "angry" else 1.0),
                seconds,
                seed=si * 100 + k,
                bright=0.8 if emotion == "angry" else 0.6,
            )
            rel = f"{speaker}/{speaker}_{k}.wav"
            (root / speaker).mkdir(exist_ok=True)
            sf.write(root / rel, wave, RATE, subtype="PCM_16")
            rows.append({"file_name": rel, "speaker": speaker, "gender": gender, "emotion": emotion})
    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


TINY = {
    "channels": [2, 4, 4, 4, 8],
    "epochs": 1,
    "batch_size": 4,
    "segment_frames": 32,
    "d_width": 0.03,
    "attacker_width": 0.03,
    "attacker_steps": 3,
    "d_warmup_steps": 2,
    "val_every": 1,
    "threads": 1,
    "progress": False,
}


def tiny_config(path: Path, **extra) -> Path:
    data = {"base": "quick", **TINY, **extra}
    path.write_text(json.dumps(data))
    return path
