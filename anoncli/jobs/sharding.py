"""Deterministic shards: utterance i of the sorted list belongs to shard i mod N."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

from anoncli.errors import AnoncliError, warn

T = TypeVar("T")


def parse_shard(text: str | None, environ: dict[str, str] | None = None) -> tuple[int, int]:
    """`K/N` (0 ≤ K < N) -> (K, N); `auto` reads SLURM array variables; None -> (0, 1)."""
    if text is None or text == "":
        return 0, 1
    if text == "auto":
        env = os.environ if environ is None else environ
        if "SLURM_ARRAY_TASK_ID" not in env:  # not an array job: the whole corpus, said out loud
            warn(
                "--shard auto: no SLURM_ARRAY_TASK_ID (not a Slurm array job), so this run takes the whole "
                "corpus (shard 0/1)"
            )
            return 0, 1
        try:
            index = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
            count = int(env.get("SLURM_ARRAY_TASK_COUNT") or 0)
        except ValueError:
            raise AnoncliError("--shard auto: SLURM_ARRAY_TASK_ID/COUNT are not integers") from None
        if count <= 0:
            raise AnoncliError("--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not")
        text = f"{index}/{count}"
    index_text, sep, count_text = text.partition("/")
    try:
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise AnoncliError(f"--shard {text!r}: expected K/N with whole numbers, e.g. 0/4") from None
    if not sep or count < 1 or not 0 <= index < count:
        raise AnoncliError(f"--shard {text!r}: expected K/N with 0 <= K < N")
    return index, count


def select_shard(items: Sequence[T], index: int, count: int) -> list[T]:
    """Shard `index` of `count`: every `count`-th item starting at `index` (round-robin, order kept)."""
    return [item for position, item in enumerate(items) if position % count == index]
