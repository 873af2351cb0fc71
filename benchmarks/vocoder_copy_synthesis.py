"""Copy-synthesis benchmark: wave -> LogMel -> vocoder (identity mel change) -> STOI against the input.

    python benchmarks/vocoder_copy_synthesis.py ../shared/corpora/emodb-dev --vocoder phase --limit 60

Each file is resampled to the working rate (default 16 kHz, the methods'),
its log-mel taken with anoncli.synthesis.mel.LogMel and given back unchanged
to the vocoder. Reported: STOI (pystoi, non-extended) of the output against
the resampled input, and speed as x real time (seconds of audio per second of
mel analysis + synthesis, one torch thread). One JSON line on stdout; a
progress bar on stderr.
"""

from __future__ import annotations

import argparse
import json
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
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    vocoder = create_vocoder(args.vocoder, args.sample_rate, checkpoint=args.checkpoint,
                             **dict(parse_option(o) for o in args.option))
    utterances = evenly_spaced(open_corpus(args.corpus).utterances, args.limit)
    scores, audio_s, compute_s = [], 0.0, 0.0
    for utt in tqdm(utterances, desc=f"{args.vocoder} copy-synthesis", file=sys.stderr):
        audio = read_audio(utt.path)
        wave = resample(torch.from_numpy(audio.samples), audio.sample_rate, args.sample_rate)
        start = time.perf_counter()
        logmel = vocoder.mel(wave[None])[0]
        out = vocoder.synthesize(logmel, wave)
        compute_s += time.perf_counter() - start
        audio_s += wave.shape[-1] / args.sample_rate
        scores.append(float(stoi(wave.numpy().astype(np.float64), out.numpy().astype(np.float64), args.sample_rate)))
    summary = {
        "corpus": str(args.corpus), "vocoder": args.vocoder, "options": vocoder.config(), "files": len(scores),
        "sample_rate": args.sample_rate, "stoi_mean": round(statistics.fmean(scores), 4),
        "stoi_median": round(statistics.median(scores), 4), "stoi_min": round(min(scores), 4),
        "audio_s": round(audio_s, 1), "compute_s": round(compute_s, 1),
        "x_real_time": round(audio_s / compute_s, 1), "threads": args.threads,
        "machine": f"{platform.machine()} {torch.get_num_threads()} torch thread(s)",
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
