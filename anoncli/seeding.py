"""Seeds derived from stable keys, so results do not depend on order, sharding or workers."""

from __future__ import annotations

import hashlib


def derive_seed(run_seed: int, key: str) -> int:
    """A 63-bit seed for `key` (an utterance or speaker id) under the run's seed."""
    digest = hashlib.sha256(f"{int(run_seed)}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1
