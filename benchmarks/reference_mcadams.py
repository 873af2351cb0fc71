"""The McAdams baseline the way the VoicePrivacy reference runs it: one frame at a time in Python.

Written from the algorithm's description for side-by-side speed comparisons
(`benchmarks/anonymize_throughput.py`); it mirrors the reference's per-frame
work and its quirks: the file is processed at its own sample rate, a
symmetric Hann window (sqrt, normalised), `librosa.lpc` (Burg's method) on
frame + eps, poles from `np.roots`, complex poles taken in conjugate pairs
and rotated, `np.poly`, two `scipy.signal.lfilter` calls (residual, then
the new all-pole filter), overlap-add starting from the second frame,
normalisation to full scale, and a 16-bit wav written per file. Files are
spread over a `multiprocessing.Pool`.

    python benchmarks/reference_mcadams.py CORPUS OUT [--jobs 2] [--limit K]
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

WINDOW_MS, SHIFT_MS, ORDER = 20, 10, 20
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg"}


def alpha_for(name: str, seed: int = 0) -> float:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return float(np.random.default_rng(int.from_bytes(digest[:8], "big")).uniform(0.5, 0.9))


def anonymize_file(source: str, target: str, alpha: float) -> float:
    """One file, frame by frame; returns its duration in seconds."""
    import librosa
    import scipy.signal
    import soundfile as sf

    signal, rate = librosa.load(source, sr=None)
    eps = np.finfo(np.float32).eps
    signal = signal + eps
    win_len = int(np.floor(WINDOW_MS * 0.001 * rate))
    shift = int(np.floor(SHIFT_MS * 0.001 * rate))
    hann = np.hanning(win_len)
    window = np.sqrt(hann / (np.sum(hann) / shift))
    n_frames = 1 + int(np.floor((len(signal) - win_len) / shift))
    rebuilt = np.zeros(len(signal))
    for m in range(1, n_frames):
        start = m * shift
        frame = signal[start : start + win_len] * window
        lpc = librosa.lpc(frame + eps, order=ORDER)
        poles = np.roots(lpc)
        complex_idx = np.where(np.iscomplex(poles))[0]
        # np.roots returns conjugate pairs next to each other: rotate the first of each pair.
        first_of_pair = complex_idx[::2]
        angles = np.clip(np.angle(poles[first_of_pair]) ** alpha, 0, np.pi)
        for k, idx in enumerate(first_of_pair):
            magnitude = np.abs(poles[idx])
            poles[idx] = magnitude * np.exp(1j * angles[k])
            if idx + 1 < len(poles):
                poles[idx + 1] = magnitude * np.exp(-1j * angles[k])
        new_lpc = np.real(np.poly(poles))
        residual = scipy.signal.lfilter(lpc, np.array([1.0]), frame)
        shaped = scipy.signal.lfilter(np.array([1.0]), new_lpc, residual) * window
        rebuilt[start : start + win_len] += shaped
    peak = np.max(np.abs(rebuilt))
    if peak > 0:
        rebuilt = rebuilt / peak
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = f"{target}.tmp-{os.getpid()}.wav"
    sf.write(tmp, (0.99 * rebuilt).astype(np.float32), rate, subtype="PCM_16")
    os.replace(tmp, target)
    return len(signal) / rate


def _task(job: tuple[str, str, float]) -> float:
    return anonymize_file(*job)


def list_audio(corpus: Path, limit: int | None = None) -> list[str]:
    """Relative paths of the corpus's audio files, sorted (the benchmark's file order)."""
    found = []
    for folder, dirs, files in os.walk(corpus, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if Path(name).suffix.lower() in AUDIO_SUFFIXES and not name.startswith("."):
                found.append(os.path.relpath(os.path.join(folder, name), corpus))
    found.sort()
    return found[:limit] if limit else found


def run_reference(corpus: Path, out: Path, rel_paths: list[str], jobs: int = 2, seed: int = 0) -> dict:
    """Anonymize the files with a Pool of `jobs` processes; returns audio seconds and wall time."""
    tasks = [(str(corpus / rel), str(out / Path(rel).with_suffix(".wav")), alpha_for(rel, seed)) for rel in rel_paths]
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        durations = pool.map(_task, tasks, chunksize=max(1, len(tasks) // (8 * jobs)))
    return {"files": len(tasks), "audio_s": float(sum(durations)), "wall_s": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    corpus = args.corpus.resolve()
    out = args.out.resolve()
    if out == corpus or corpus in out.parents:
        print(f"error: {out} is inside the corpus {corpus}", file=sys.stderr)
        return 2
    stats = run_reference(corpus, out, list_audio(corpus, args.limit), args.jobs)
    print(
        f"{stats['files']} files, {stats['audio_s']:.1f} s of audio in {stats['wall_s']:.2f} s "
        f"({stats['audio_s'] / stats['wall_s']:.0f}x real time)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
