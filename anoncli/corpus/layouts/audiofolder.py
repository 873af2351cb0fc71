"""Hugging Face audiofolder: audio plus `metadata.csv|jsonl|parquet` keyed by `file_name`.

The table sits in the corpus folder, or one per split folder
(`train/metadata.csv`, `test/metadata.csv`, paths relative to that folder),
as `datasets` accepts; split tables add a `split` label.

Also the plain fallback: any folder of audio, no labels, utterance ids from
the paths.
"""

from __future__ import annotations

from pathlib import Path

from anoncli.corpus.labels import METADATA_NAMES, find_metadata, load_labels
from anoncli.corpus.layouts.base import Detection, Layout, LayoutResult, Scan
from anoncli.corpus.utterance import Utterance, utt_id_from_rel_path
from anoncli.corpus.walk import text_name
from anoncli.errors import warn


def path_utterances(scan: Scan) -> list[Utterance]:
    """One unlabelled `Utterance` per audio path of the scan, its id taken from the relative path."""
    root = scan.root
    return [Utterance(utt_id_from_rel_path(rel), root / rel, rel, {}) for rel in scan.audio]


def split_tables(scan: Scan) -> list[tuple[Path, str]]:
    """(table, split folder) for each metadata table one folder below the root."""
    found = {}
    for rel in scan.stats.side_files:
        folder, _, name = rel.rpartition("/")
        if folder and "/" not in folder and name in METADATA_NAMES and folder not in found:
            found[folder] = scan.root / rel
    return [(table, folder) for folder, table in sorted(found.items())]


def attach_table(
    utterances: list[Utterance], table: Path, root: Path, split: str | None = None, sep: str | None = None
) -> tuple[list[str], int, int, int]:
    """Merge a label table into the utterances in place; the table's values win.

    With `split`, the table lists paths relative to root/split and only the
    utterances in that folder are touched. Returns the table's columns, how
    many audio files it does not list, how many values it changed that the
    layout had already set, and how many of its rows name a file that is not
    in the corpus. `sep` is the CSV separator (None: sniffed).
    """
    prefix = f"{split}/" if split else ""
    label_map, columns, absent = load_labels(table, root / split if split else root, sep)
    unlisted = changed = 0
    for utt in utterances:
        if prefix and not utt.rel_path.startswith(prefix):
            continue
        row = label_map.get(text_name(utt.rel_path)[len(prefix) :])  # tables name files in UTF-8
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
    return columns, unlisted, changed, absent


def table_notes(table: Path, unlisted: int, absent: int) -> list[str]:
    """Warnings (printed now, kept as notes) for audio files a table does not label and rows naming no file."""
    notes = []
    if unlisted:
        notes.append(f"{unlisted} audio file(s) are not listed in {table}: they have no labels")
    if absent:
        notes.append(f"{absent} row(s) of {table} name a file that is not in the corpus: left out")
    for note in notes:
        warn(note)
    return notes


class AudioFolder(Layout):
    """Hugging Face audiofolder: a metadata table in the root, or one per split folder one level down."""

    name = "audiofolder"
    title = "audiofolder (metadata.csv|jsonl|parquet with file_name)"

    def detect(self, scan: Scan) -> Detection | None:
        table = find_metadata(scan.root)
        if table is not None:
            return Detection(self.name, 1.0, f"{table.name} in the folder")
        splits = split_tables(scan)
        if splits:
            return Detection(self.name, 1.0, f"metadata tables in {', '.join(f for _, f in splits)}")
        return None

    def load(
        self, scan: Scan, labels_file: Path | None = None, labels_sep: str | None = None, **options
    ) -> LayoutResult:
        table = labels_file or find_metadata(scan.root)
        utterances = path_utterances(scan)
        if table is not None:
            columns, unlisted, _, absent = attach_table(utterances, table, scan.root, sep=labels_sep)
            return LayoutResult(utterances, columns, str(table), table_notes(table, unlisted, absent))
        splits = split_tables(scan)
        if not splits:
            return LayoutResult(
                utterances, [], None, ["no metadata.csv, metadata.jsonl or metadata.parquet: no labels"]
            )
        columns: list[str] = []
        unlisted = absent = 0
        for split_table, split in splits:
            table_columns, missing, _, left_out = attach_table(utterances, split_table, scan.root, split, labels_sep)
            columns += [c for c in table_columns if c not in columns]
            unlisted += missing
            absent += left_out
        split_of = {folder for _, folder in splits}
        for utt in utterances:
            folder = utt.rel_path.split("/", 1)[0] if "/" in utt.rel_path else None
            if folder not in split_of:
                unlisted += 1
            for column in columns:
                utt.labels.setdefault(column, None)
            utt.labels.setdefault("split", folder if folder in split_of else None)
        if "split" not in columns:
            columns.append("split")
        notes = table_notes(Path("the split tables"), unlisted, absent)
        return LayoutResult(utterances, columns, " + ".join(str(t) for t, _ in splits), notes)


class Plain(Layout):
    """Any folder of audio: every file an utterance, no labels."""

    name = "plain"
    title = "plain folder of audio (no labels)"

    def detect(self, scan: Scan) -> Detection | None:
        return Detection(self.name, 1.0, "any audio") if scan.audio else None

    def load(self, scan: Scan, **options) -> LayoutResult:
        return LayoutResult(path_utterances(scan), [], None, [])
