"""Hugging Face audiofolder: audio plus `metadata.csv|jsonl|parquet` keyed by `file_name`.

Also the plain fallback: any folder of audio, no labels, utterance ids from
the paths.
"""

from __future__ import annotations

from pathlib import Path

from anoncli.corpus.labels import find_metadata, load_labels
from anoncli.corpus.layouts.base import Detection, Layout, LayoutResult, Scan
from anoncli.corpus.utterance import Utterance, utt_id_from_rel_path


def path_utterances(scan: Scan) -> list[Utterance]:
    root = scan.root
    return [Utterance(utt_id_from_rel_path(rel), root / rel, rel, {}) for rel in scan.audio]


def attach_table(utterances: list[Utterance], table: Path, root: Path) -> tuple[list[str], int, int]:
    """Merge a label table into the utterances in place; the table's values win.

    Returns the table's columns, how many audio files it does not list, and
    how many values it changed that the layout had already set.
    """
    label_map, columns = load_labels(table, root)
    unlisted = changed = 0
    for utt in utterances:
        row = label_map.get(utt.rel_path)
        if row is None:
            unlisted += 1
            for column in columns:
                utt.labels.setdefault(column, None)
            continue
        for column in columns:
            old = utt.labels.get(column)
            new = row.get(column)
            if new is None and old is not None:
                continue  # an empty cell does not erase a label the layout knows
            if old is not None and new != old:
                changed += 1
            utt.labels[column] = new
    return columns, unlisted, changed


class AudioFolder(Layout):
    name = "audiofolder"
    title = "audiofolder (metadata.csv|jsonl|parquet with file_name)"

    def detect(self, scan: Scan) -> Detection | None:
        table = find_metadata(scan.root)
        if table is None:
            return None
        return Detection(self.name, 1.0, f"{table.name} in the folder")

    def load(self, scan: Scan, labels_file: Path | None = None, **options) -> LayoutResult:
        table = labels_file or find_metadata(scan.root)
        utterances = path_utterances(scan)
        notes = []
        columns: list[str] = []
        if table is None:
            notes.append("no metadata.csv, metadata.jsonl or metadata.parquet: no labels")
        else:
            columns, unlisted, _ = attach_table(utterances, table, scan.root)
            if unlisted:
                notes.append(f"{unlisted} audio file(s) are not listed in {table.name}: they have no labels")
        return LayoutResult(utterances, columns, str(table) if table else None, notes)


class Plain(Layout):
    name = "plain"
    title = "plain folder of audio (no labels)"

    def detect(self, scan: Scan) -> Detection | None:
        return Detection(self.name, 1.0, "any audio") if scan.audio else None

    def load(self, scan: Scan, **options) -> LayoutResult:
        return LayoutResult(path_utterances(scan), [], None, [])
