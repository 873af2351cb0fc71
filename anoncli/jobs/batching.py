"""Cutting the work list into batches: a fixed count, or duration buckets capped in seconds of audio.

A fixed count gives batches of very different cost when utterance lengths
vary (a batch of 16 ten-minute files next to one of 16 digits), and padded
GPU batches waste compute on the short members. Duration buckets sort the
utterances by length, so each batch holds similar lengths, and close a batch
before its summed duration passes `max_batch_seconds`: every batch costs about
the same and fits the device memory the cap was chosen for. Batches come out
longest first, so parallel workers do not end on one long straggler.

Durations come from file headers (`soundfile.info`), not from decoding.

Without a count or a cap, `auto_plan` sizes batches (and decides whether
workers pay at all) from the total duration `estimate_total_seconds` finds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import soundfile as sf

from anoncli.audio import header_frames
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
    if not info.samplerate or not header_frames(info.frames):  # a FLAC written to a pipe gives no length
        return 0.0
    return info.frames / info.samplerate


def durations(utterances: Sequence[Utterance], threads: int = HEADER_THREADS) -> list[float]:
    """Each utterance's duration in seconds from its audio header (0.0 when unreadable); headers read on threads for 64+ files."""
    if len(utterances) < 64 or threads <= 1:
        return [header_duration(u) for u in utterances]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(header_duration, utterances, chunksize=32))


def fixed_batches(items: Sequence[Utterance], size: int) -> list[list[Utterance]]:
    """`items` cut in order into batches of `size` (the last may be shorter)."""
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


def duration_batches(
    utterances: Sequence[Utterance], max_seconds: float, lengths: Sequence[float] | None = None
) -> list[list[Utterance]]:
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


def make_batches(
    utterances: Sequence[Utterance], batch_size: int, max_batch_seconds: float | None = None
) -> list[list[Utterance]]:
    """Duration buckets when a seconds cap is given, else consecutive groups of `batch_size`."""
    if max_batch_seconds is None:
        return fixed_batches(utterances, batch_size)
    return duration_batches(utterances, max_batch_seconds)


# ---- automatic sizing: from the corpus's total duration ---------------------------------------------------

# Below this much audio a job runs in this process whatever --jobs says: starting and feeding workers
# costs more than the second core saves (about 0.2 s of McAdams compute per minute of audio per core).
MIN_PARALLEL_AUDIO_S = 60.0
# Audio per batch: one pending manifest file per batch, and a batch's audio (decoded, resampled,
# transformed) is what a worker holds in memory at once.
TARGET_BATCH_AUDIO_S = 60.0
# At least this many batches per worker, so that workers finish together (no straggler batch).
BATCHES_PER_WORKER = 4
# Headers read to learn the corpus's seconds per byte.
SAMPLED_HEADERS = 16


def estimate_total_seconds(utterances: Sequence[Utterance]) -> float:
    """The shard's total audio in seconds, estimated without reading every header.

    File sizes (one stat each) times the seconds per byte of up to
    SAMPLED_HEADERS headers spread over the list; piped commands and
    unreadable files count as the average file. Within a factor of the
    codec mix of the corpus, which is all batch sizing needs.
    """
    if not utterances:
        return 0.0
    sizes: list[int | None] = []
    for utt in utterances:
        try:
            sizes.append(None if getattr(utt, "command", None) is not None else utt.path.stat().st_size)
        except OSError:
            sizes.append(None)
    step = max(1, len(utterances) // SAMPLED_HEADERS)
    sampled = [(header_duration(utterances[i]), sizes[i]) for i in range(0, len(utterances), step)][:SAMPLED_HEADERS]
    seconds = sum(d for d, s in sampled if d > 0 and s)
    nbytes = sum(s for d, s in sampled if d > 0 and s)
    known = [s for s in sizes if s]
    if not nbytes or not known:
        per_file = seconds / max(1, sum(1 for d, _ in sampled if d > 0)) or 1.0
        return per_file * len(utterances)
    per_byte = seconds / nbytes
    average = sum(known) / len(known)
    return per_byte * (sum(known) + average * (len(sizes) - len(known)))


def auto_plan(n_files: int, total_s: float, jobs: int) -> tuple[int, int]:
    """(workers, files per batch) for `n_files` holding `total_s` seconds of audio and up to `jobs` workers.

    Small jobs (under MIN_PARALLEL_AUDIO_S) run on one worker; otherwise the
    batches hold about TARGET_BATCH_AUDIO_S of audio, with at least
    BATCHES_PER_WORKER batches per worker.
    """
    if n_files <= 0:
        return 1, 1
    workers = 1 if jobs <= 1 or total_s < MIN_PARALLEL_AUDIO_S else jobs
    batches = max(1, math.ceil(total_s / TARGET_BATCH_AUDIO_S), BATCHES_PER_WORKER * workers if workers > 1 else 1)
    return workers, max(1, math.ceil(n_files / batches))
