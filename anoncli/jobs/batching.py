"""Cutting the work list into batches: a fixed count, or duration buckets capped in seconds of audio.

A fixed count gives batches of very different cost when utterance lengths
vary (a batch of 16 ten-minute files next to one of 16 digits), and padded
GPU batches waste compute on the short members. Duration buckets sort the
utterances by length, so each batch holds similar lengths, and close a batch
before its summed duration passes `max_batch_seconds`: every batch costs about
the same and fits the device memory the cap was chosen for. Batches come out
longest first, so parallel workers do not end on one long straggler.

Durations come from file headers (`soundfile.info`), not from decoding.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import soundfile as sf

from anoncli.corpus.utterance import Utterance
from anoncli.errors import AnoncliError

# Header reads are I/O-bound (network file systems); a few threads hide the latency.
HEADER_THREADS = 8


def header_duration(utt: Utterance) -> float:
    """Seconds of audio per the file header; 0.0 when unknown (piped commands, unreadable files).

    Unknown lengths are harmless: such files just join a batch without counting
    against its cap, and a file that cannot be read fails in the worker as usual.
    """
    if getattr(utt, "command", None) is not None:
        return 0.0
    try:
        info = sf.info(str(utt.path))
    except Exception:
        return 0.0
    if not info.samplerate or info.frames <= 0:
        return 0.0
    return info.frames / info.samplerate


def durations(utterances: Sequence[Utterance], threads: int = HEADER_THREADS) -> list[float]:
    if len(utterances) < 64 or threads <= 1:
        return [header_duration(u) for u in utterances]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(header_duration, utterances, chunksize=32))


def fixed_batches(items: Sequence[Utterance], size: int) -> list[list[Utterance]]:
    return [list(items[start:start + size]) for start in range(0, len(items), size)]


def duration_batches(utterances: Sequence[Utterance], max_seconds: float,
                     lengths: Sequence[float] | None = None) -> list[list[Utterance]]:
    """Utterances sorted by length (longest first), packed while the batch's total stays <= max_seconds.

    A single utterance longer than the cap gets a batch of its own. The order is
    deterministic (ties broken by utt_id), so reruns build the same batches.
    """
    if max_seconds <= 0:
        raise AnoncliError(f"--max-batch-seconds {max_seconds}: must be positive")
    lengths = list(lengths) if lengths is not None else durations(utterances)
    if len(lengths) != len(utterances):
        raise ValueError("one duration per utterance expected")
    order = sorted(range(len(utterances)), key=lambda i: (-lengths[i], utterances[i].utt_id))
    batches: list[list[Utterance]] = []
    current: list[Utterance] = []
    total = 0.0
    for index in order:
        length = lengths[index]
        if current and total + length > max_seconds:
            batches.append(current)
            current, total = [], 0.0
        current.append(utterances[index])
        total += length
    if current:
        batches.append(current)
    return batches


def make_batches(utterances: Sequence[Utterance], batch_size: int,
                 max_batch_seconds: float | None = None) -> list[list[Utterance]]:
    """Duration buckets when a seconds cap is given, else consecutive groups of `batch_size`."""
    if max_batch_seconds is None:
        return fixed_batches(utterances, batch_size)
    return duration_batches(utterances, max_batch_seconds)

