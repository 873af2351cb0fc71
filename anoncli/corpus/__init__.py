"""Corpus discovery: audio files, their stable ids and their labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from anoncli.corpus.labels import find_metadata, load_labels
from anoncli.corpus.utterance import Utterance, utt_id_from_rel_path
from anoncli.corpus.walk import WalkStats, iter_audio_files
from anoncli.errors import InputError

# Columns the manifest owns; a label column of the same name is renamed label_<name>.
RESERVED = {"utt_id", "source_path", "output_path", "status", "error"}

__all__ = ["Corpus", "Utterance", "open_corpus"]


@dataclass
class Corpus:
    root: Path
    utterances: list[Utterance]
    label_columns: list[str]
    layout: str = "plain"
    labels_source: str | None = None
    ignored_files: int = 0
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self):
        return iter(self.utterances)


def _rename_reserved(columns: list[str]) -> dict[str, str]:
    return {c: (f"label_{c}" if c in RESERVED else c) for c in columns}


def open_corpus(root: str | Path, labels_file: str | Path | None = None, layout: str = "auto") -> Corpus:
    """Find every audio file under `root`, sorted by utterance id, with labels attached.

    `layout` names a known corpus layout or "auto"; the plain walk with an
    audiofolder metadata file is what "auto" falls back to.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root}: no such folder")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    stats = WalkStats()
    rel_paths = sorted(iter_audio_files(root, stats))

    labels_path = Path(labels_file) if labels_file else find_metadata(root)
    label_map: dict[str, dict] = {}
    columns: list[str] = []
    if labels_path is not None:
        if not labels_path.is_file():
            raise InputError(f"{labels_path}: no such labels file")
        label_map, columns = load_labels(labels_path, root)
    renames = _rename_reserved(columns)

    seen: dict[str, str] = {}
    utterances = []
    for rel in rel_paths:
        utt_id = utt_id_from_rel_path(rel)
        if utt_id in seen:
            raise InputError(f"{root}: {seen[utt_id]!r} and {rel!r} give the same utterance id {utt_id!r}")
        seen[utt_id] = rel
        raw = label_map.get(rel, {})
        labels = {renames[c]: raw.get(c) for c in columns}
        utterances.append(Utterance(utt_id, root / rel, rel, labels))
    utterances.sort(key=lambda u: u.utt_id)
    return Corpus(
        root=root,
        utterances=utterances,
        label_columns=[renames[c] for c in columns],
        layout="audiofolder" if labels_path is not None and labels_file is None else "plain",
        labels_source=str(labels_path) if labels_path else None,
        ignored_files=stats.ignored_files,
    )
