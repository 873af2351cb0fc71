"""The unit of work: one audio file of a corpus and its labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class Utterance:
    """One input file.

    `utt_id` is derived from the path relative to the corpus root, so it is the
    same on every machine and every run; `labels` holds speaker, gender,
    emotion, transcript and any other column the corpus provides (as strings).
    `command` is set only for a Kaldi wav.scp entry that pipes a shell command
    (and only when the user allowed commands); `path` is then the wav.scp.
    """

    utt_id: str
    path: Path
    rel_path: str
    labels: dict[str, str | None] = field(default_factory=dict, compare=False, hash=False)
    command: str | None = field(default=None, compare=False, hash=False)

    @property
    def speaker(self) -> str | None:
        return self.labels.get("speaker")


def utt_id_from_rel_path(rel_path: str) -> str:
    """`wav/03a01Fa.wav` -> `wav/03a01Fa`: stable, readable, unique within a corpus."""
    return str(PurePosixPath(rel_path).with_suffix(""))
