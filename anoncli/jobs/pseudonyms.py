"""Pseudonyms for utterance and speaker ids.

Pseudonyms are keyed HMACs: the key is random, created once next to the
user's mapping file (never inside the output), so every shard of a run agrees
on a speaker's pseudonym while nobody without the key can recompute them.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from anoncli.atomic import atomic_path
from anoncli.corpus.utterance import Utterance


def key_path(mapping: Path) -> Path:
    """The pseudonym key file beside the mapping file: `<mapping>.key`."""
    return mapping.with_name(mapping.name + ".key")


def load_or_create_key(mapping: Path) -> bytes:
    """The 32-byte HMAC key beside `mapping`, created (mode 0600, exclusively) when absent so that concurrent shards share it."""
    path = key_path(mapping)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path)
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex() + "\n")
    return key


def key_id(mapping: Path) -> str | None:
    """A public fingerprint of the key beside `mapping` (`key-` and 12 hex digits of a keyed hash), or None
    when it does not exist yet; it tells two keys apart without revealing either."""
    path = key_path(mapping)
    if not path.is_file():
        return None
    return "key-" + hmac.new(_read_key(path), b"anoncli key id", hashlib.sha256).hexdigest()[:12]


def _read_key(path: Path) -> bytes:
    """The key a key file holds (hex text)."""
    return bytes.fromhex(path.read_text().strip())


class Pseudonymizer:
    """Keyed HMAC-SHA256 pseudonyms for speaker and utterance ids."""

    def __init__(self, key: bytes):
        self._key = key

    @property
    def key(self) -> bytes:
        """The HMAC key (32 bytes)."""
        return self._key

    def _digest(self, kind: str, value: str, length: int) -> str:
        return hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:length]

    def speaker(self, speaker: str | None) -> str | None:
        """`spk-` and 10 hex digits of the keyed hash; None for no speaker."""
        return None if speaker is None else "spk-" + self._digest("speaker", speaker, 10)

    def utterance(self, utt_id: str) -> str:
        """`utt-` and 16 hex digits of the keyed hash."""
        return "utt-" + self._digest("utt", utt_id, 16)


def write_mapping(path: Path, utterances: list[Utterance], pseudonyms: Pseudonymizer) -> None:
    """The only place original ids and pseudonyms meet: a CSV (utt_id, source_path, speaker, pseudo_utt_id,
    pseudo_speaker) written atomically and readable by its owner only (created with mode 0600, like the key:
    the mapping alone reverses the pseudonyms). Raises OSError with `path` unchanged when the write fails."""
    with atomic_path(path) as tmp, _owner_only(tmp) as handle:
        writer = csv.writer(handle)
        writer.writerow(["utt_id", "source_path", "speaker", "pseudo_utt_id", "pseudo_speaker"])
        for utt in utterances:
            writer.writerow(
                [
                    utt.utt_id,
                    utt.source_path,
                    utt.speaker or "",
                    pseudonyms.utterance(utt.utt_id),
                    pseudonyms.speaker(utt.speaker) or "",
                ]
            )


def _owner_only(path: Path):
    """A new text file at `path` opened for writing, created with mode 0600 (never wider, even for a moment)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a leftover of a killed write would keep its old mode
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "w", newline="")
