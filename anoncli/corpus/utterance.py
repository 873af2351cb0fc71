"""The unit of work: one audio file of a corpus and its labels."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class Utterance:
    """One input file.

    `utt_id` is derived from the path relative to the corpus root, so it is the
    same on every machine and every run; `rel_path` is where its output goes
    (relative to the output folder); `labels` holds speaker, gender,
    emotion, transcript and any other column the corpus provides (as strings).
    `command` is set only for a Kaldi wav.scp entry that pipes a shell command
    (and only when the user allowed commands); `path` is then the wav.scp.
    `source` is the input as the corpus names it when that differs from
    `rel_path` (a Kaldi wav.scp entry: its file, relative to the corpus
    folder when inside it, else absolute; or its command).
    """

    utt_id: str
    path: Path
    rel_path: str
    labels: dict[str, str | None] = field(default_factory=dict, compare=False, hash=False)
    command: str | None = field(default=None, compare=False, hash=False)
    source: str | None = field(default=None, compare=False, hash=False)

    @property
    def speaker(self) -> str | None:
        """The "speaker" label, or None when the corpus has none."""
        return self.labels.get("speaker")

    @property
    def source_path(self) -> str:
        """The input this utterance is read from, as recorded in manifests (`root / source_path` finds it)."""
        return self.source if self.source is not None else self.rel_path


def utt_id_from_rel_path(rel_path: str) -> str:
    """`wav/03a01Fa.wav` -> `wav/03a01Fa`: stable, readable, unique within a corpus."""
    return str(PurePosixPath(rel_path).with_suffix(""))


_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")
# Hex digits of the name's hash appended when making it safe lost characters.
_ID_HASH_DIGITS = 10


def safe_id(name: str, max_length: int = 200, hash_of: str | None = None) -> str:
    """A name made of ASCII letters, digits, `.`, `_` and `-` only, unique and stable for any Unicode name.

    A name that is already safe is returned unchanged (unless `hash_of` is
    given). Otherwise the unsafe runs become `_` and a hash of the full name
    (or of `hash_of`, the original a caller already rewrote) is appended
    (`日本` -> `u_e83335cfe1`, `-rf` -> `rf_<hash>`), so two names that differ
    only in replaced characters still get different ids, on every machine
    and every run. The result never starts with `.` or `-` (no hidden files,
    no command-line options).
    """
    text = str(name)
    if hash_of is None and text and len(text) <= max_length and not _UNSAFE_ID.search(text) and text[0] not in ".-":
        return text
    original = text if hash_of is None else hash_of
    digest = hashlib.blake2b(original.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()[:_ID_HASH_DIGITS]
    cleaned = _UNSAFE_ID.sub("_", text).strip("._-")
    cleaned = cleaned[: max(0, max_length - _ID_HASH_DIGITS - 1)]
    return f"{cleaned}_{digest}" if cleaned else f"u_{digest}"
