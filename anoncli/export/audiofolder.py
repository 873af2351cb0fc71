"""Hugging Face audiofolder writer: audio files plus metadata.csv keyed by file_name.

Audio is hard-linked from the output folder when both lie on one file system
(no extra space, and anonymized files are never edited in place), else copied.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path, PurePosixPath

from anoncli.export.source import ExportRow


def place_file(source: Path, target: Path, link: bool) -> str:
    target.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(source, target)
            return "linked"
        except OSError:
            pass  # another file system, or links not allowed: copy instead
    shutil.copyfile(source, target)
    return "copied"


def write_audiofolder(rows: list[ExportRow], columns: list[str], folder: Path, pseudonymous: bool, link: bool = True) -> list[str]:
    """Write audio and metadata.csv into `folder` (which exists and is empty); return notes."""
    header = ["file_name", "utt_id", "speaker"] + [c for c in columns if c not in ("file_name", "utt_id", "speaker")]
    placed = {"linked": 0, "copied": 0}
    records = []
    for row in rows:
        suffix = PurePosixPath(row.output_path).suffix or ".wav"
        # A pseudonymous export must not keep the original tree (folder names carry speakers).
        name = f"{row.utt_id}{suffix}" if pseudonymous else row.output_path
        placed[place_file(row.audio, folder / name, link)] += 1
        records.append([name, row.utt_id, row.speaker or ""] + [row.labels.get(c) or "" for c in header[3:]])
    with open(folder / "metadata.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(records)
    return [f"{placed['linked']} file(s) hard-linked, {placed['copied']} copied"]
