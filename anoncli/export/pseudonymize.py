"""Export-time pseudonyms: keyed HMACs of the ids (the job engine's Pseudonymizer).

The key lives next to the mapping file (FILE.key), so exporting again with
the same --mapping gives the same pseudonyms. Columns that repeat an
original id (manifest `label_*` copies, LibriSpeech chapters, any column
equal to the speaker or utterance id on most rows) are dropped.
"""

from __future__ import annotations

import csv
import os
from dataclasses import replace
from pathlib import Path

from anoncli.atomic import atomic_path
from anoncli.export.source import ExportRow
from anoncli.jobs.pseudonyms import Pseudonymizer, load_or_create_key

# Columns that name a book, a reader or a file of the original corpus.
IDENTIFYING_COLUMNS = {"chapter", "name", "path", "file_name", "source_path"}


def identifying_columns(rows: list[ExportRow], columns: list[str]) -> list[str]:
    """Label columns to drop from a pseudonymous export: known identifying names, `label_*`, and columns that mostly echo the utterance or speaker id."""
    drop = []
    for column in columns:
        if column in IDENTIFYING_COLUMNS or column.startswith("label_"):
            drop.append(column)
            continue
        values = [(r.labels.get(column), r) for r in rows if r.labels.get(column) is not None]
        echoes = sum(1 for value, r in values if value in (r.utt_id, r.speaker))
        if values and echoes * 2 >= len(values):
            drop.append(column)
    return drop


def pseudonymize_rows(
    rows: list[ExportRow], columns: list[str], mapping: Path
) -> tuple[list[ExportRow], list[str], list[str]]:
    """Rows with pseudonymous ids, the columns kept, the columns dropped; writes the mapping."""
    pseudonyms = Pseudonymizer(load_or_create_key(mapping))
    dropped = identifying_columns(rows, columns)
    kept = [c for c in columns if c not in dropped]
    new_rows = []
    for row in rows:
        new_rows.append(
            replace(
                row,
                utt_id=pseudonyms.utterance(row.utt_id),
                speaker=pseudonyms.speaker(row.speaker),
                labels={c: row.labels.get(c) for c in kept},
            )
        )
    write_mapping(mapping, rows, new_rows)
    return new_rows, kept, dropped


def write_mapping(path: Path, originals: list[ExportRow], pseudonymous: list[ExportRow]) -> None:
    """The only file where original ids and pseudonyms meet; written atomically, owner-readable only."""
    with (
        atomic_path(path) as tmp,
        os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", newline="") as handle,
    ):
        writer = csv.writer(handle)
        writer.writerow(["utt_id", "speaker", "pseudo_utt_id", "pseudo_speaker"])
        for old, new in zip(originals, pseudonymous):
            writer.writerow([old.utt_id, old.speaker or "", new.utt_id, new.speaker or ""])
