"""Copy-synthesis benchmark: wave -> LogMel -> vocoder (identity mel change) -> STOI against the input.

    python benchmarks/vocoder_copy_synthesis.py ../shared/corpora/emodb-dev --vocoder phase --limit 60

Each file is resampled to the working rate (default 16 kHz, the methods'),
its log-mel taken with anoncli.synthesis.mel.LogMel and given back unchanged
to the vocoder. Reported: STOI (pystoi, non-extended) of the output against
the resampled input, the mean absolute log10-mel difference between the
output and the mel that was asked for (`mel_l1`: how faithfully the backend
realises a mel), and speed as x real time (seconds of audio per second of mel
analysis + synthesis, one torch thread), both in wall-clock time and in the
process's CPU time (`x_real_time_cpu`, what one free core would give, much
less disturbed by other jobs on a shared machine). One JSON line on stdout; a
progress bar on stderr.

STOI needs about 0.4 s of non-silent speech (30 frames after pystoi drops
silent ones) and returns a meaningless 1e-5 below that, so files shorter than
1.5 s (all of fsdd's spoken digits) are scored in pools: consecutive short
files, input and output each concatenated, until a pool holds 3 s.

`--change warp=1.1` asks instead for a changed mel: the mel axis stretched by
1.1 (formants and harmonics moved up, like a shorter vocal tract), the kind
of envelope change a voice-conversion method makes. STOI against the input
then measures more than vocoder loss, but `mel_l1` still says which backend
delivers the change it was given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pystoi import stoi
from tqdm import tqdm

from anoncli.audio import read_audio, resample
from anoncli.corpus import open_corpus
from anoncli.synthesis import DEFAULT_VOCODER, create_vocoder


def parse_option(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, value


def warp_mel(logmel: torch.Tensor, factor: float) -> torch.Tensor:
    """Output band m takes the value the input had at band m / factor (linear interpolation)."""
    bands = logmel.shape[0]
    source = (torch.arange(bands, dtype=torch.float32) / factor).clamp(0, bands - 1)
    low = source.floor().long()
    high = (low + 1).clamp(max=bands - 1)
    weight = (source - low)[:, None]
    return logmel[low] * (1 - weight) + logmel[high] * weight


SHORT_FILE_S = 1.5
POOL_S = 3.0


class StoiScorer:
    """Per-file STOI for long files; short files pooled into >= POOL_S concatenations."""

    def __init__(self, rate: int):
        self.rate = rate
        self.scores: list[float] = []
        self.pooled_files = 0
        self._pool: list[tuple[np.ndarray, np.ndarray]] = []
        self._last_pool: list[tuple[np.ndarray, np.ndarray]] = []

    def _score(self, ref: np.ndarray, out: np.ndarray) -> None:
        self.scores.append(float(stoi(ref.astype(np.float64), out.astype(np.float64), self.rate)))

    def add(self, ref: np.ndarray, out: np.ndarray) -> None:
        if len(ref) >= SHORT_FILE_S * self.rate:
            self._score(ref, out)
            self._last_pool = []  # the last score is no longer a pool's
            return
        self.pooled_files += 1
        self._pool.append((ref, out))
        if sum(len(r) for r, _ in self._pool) >= POOL_S * self.rate:
            self.flush()

    def flush(self, final: bool = False) -> None:
        """Score the pool; a last pool shorter than POOL_S joins the one before it."""
        if not self._pool:
            return
        if final and self._last_pool and sum(len(r) for r, _ in self._pool) < POOL_S * self.rate:
            self.scores.pop()
            self._pool = self._last_pool + self._pool
        self._score(np.concatenate([r for r, _ in self._pool]), np.concatenate([o for _, o in self._pool]))
        self._last_pool, self._pool = self._pool, []


def evenly_spaced(items: list, limit: int | None) -> list:
    """`limit` items spread over the sorted corpus, so every speaker is represented."""
    if not limit or limit >= len(items):
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--vocoder", default=DEFAULT_VOCODER)
    parser.add_argument("--limit", type=int, default=None, help="evaluate K files spread over the corpus")
    parser.add_argument("--sample-rate", type=int, default=16000, help="working rate (default 16000)")
    parser.add_argument("--checkpoint", default=None, help="MelGAN checkpoint file or run folder")
    parser.add_argument("--option", action="append", default=[], help="backend option KEY=VALUE (e.g. n_iter=32)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--change", default=None, help="ask for a changed mel: warp=FACTOR")
    parser.add_argument(
        "--speakers",
        default=None,
        help="comma-separated speaker ids to keep (e.g. a trained MelGAN's validation speakers)",
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    vocoder = create_vocoder(
        args.vocoder, args.sample_rate, checkpoint=args.checkpoint, **dict(parse_option(o) for o in args.option)
    )
    utterances = open_corpus(args.corpus).utterances
    if args.speakers:
        keep = {s.strip() for s in args.speakers.split(",")}
        utterances = [u for u in utterances if u.speaker in keep]
    utterances = evenly_spaced(utterances, args.limit)
    warp = float(args.change.split("=", 1)[1]) if args.change else None
    if args.change and not args.change.startswith("warp="):
        parser.error("--change: only warp=FACTOR is known")
    scorer = StoiScorer(args.sample_rate)
    mel_errors, audio_s, compute_s, cpu_s = [], 0.0, 0.0, 0.0
    for utt in tqdm(utterances, desc=f"{args.vocoder} copy-synthesis", file=sys.stderr):
        audio = read_audio(utt.path)
        wave = resample(torch.from_numpy(audio.samples), audio.sample_rate, args.sample_rate)
        start, start_cpu = time.perf_counter(), time.process_time()
        logmel = vocoder.mel(wave[None])[0]
        if warp:
            logmel = warp_mel(logmel, warp)
        out = vocoder.synthesize(logmel, wave)
        compute_s += time.perf_counter() - start
        cpu_s += time.process_time() - start_cpu
        mel_errors.append(float((vocoder.mel(out[None])[0] - logmel).abs().mean()))
        audio_s += wave.shape[-1] / args.sample_rate
        scorer.add(wave.numpy(), out.numpy())
    scorer.flush(final=True)
    scores = scorer.scores
    summary = {
        "corpus": str(args.corpus),
        "vocoder": args.vocoder,
        "options": vocoder.config(),
        "files": len(utterances),
        "stoi_units": len(scores),
        "pooled_files": scorer.pooled_files,
        "sample_rate": args.sample_rate,
        "stoi_mean": round(statistics.fmean(scores), 4),
        "stoi_median": round(statistics.median(scores), 4),
        "stoi_min": round(min(scores), 4),
        "mel_l1": round(statistics.fmean(mel_errors), 4),
        "change": args.change,
        "speakers": args.speakers,
        "audio_s": round(audio_s, 1),
        "compute_s": round(compute_s, 1),
        "x_real_time": round(audio_s / compute_s, 1),
        "cpu_s": round(cpu_s, 1),
        "x_real_time_cpu": round(audio_s / cpu_s, 1),
        "threads": args.threads,
        "load_avg_1min": round(os.getloadavg()[0], 1),
        "machine": f"{platform.machine()} {torch.get_num_threads()} torch thread(s)",
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
