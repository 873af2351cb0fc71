"""Hugging Face audiofolder writer: audio files plus metadata.jsonl keyed by file_name.

Every label is written as a JSON string (or null where missing), so that
`datasets` and pandas give back speaker "01", zip "02134" and transcript "NA"
as the strings they are: a CSV's cells are typed by guessing, and "01"
came back as the integer 1, "NA" as None.

Audio is hard-linked from the output folder when both lie on one file system
(no extra space, and anonymized files are never edited in place), else copied.

`datasets.load_dataset("audiofolder", data_dir=DIR)` infers splits from path
names (`dev-clean/...` becomes a validation split, and the root metadata table
then labels none of its files). The export keeps the output tree when no path
would be read as a split, and otherwise names every file `audio/<hash>.<ext>`
(hex digits spell no split name), so that one `train` split holds every row
with its labels; the original ids stay in the `utt_id` column.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path, PurePosixPath

from anoncli.export.source import ExportRow

METADATA = "metadata.jsonl"
# The words `datasets` reads as split names in a path, and the characters around them.
_SPLIT_WORDS = "train|training|validation|valid|dev|val|test|testing|eval|evaluation"
_SEP = r"[-._ 0-9]"
_SPLIT_DIR = re.compile(rf"^(?:{_SPLIT_WORDS})(?:$|{_SEP})|{_SEP}(?:{_SPLIT_WORDS})(?:$|{_SEP})")
_SPLIT_FILE = re.compile(rf"^(?:{_SPLIT_WORDS}){_SEP}|{_SEP}(?:{_SPLIT_WORDS}){_SEP}")
_SHARDED = re.compile(r"^data/[^/]*-\d{5}-of-\d{5}")


def names_a_split(rel_path: str) -> bool:
    """Whether `datasets` would read a split name (train, dev, test, ...) in this relative path."""
    *folders, name = rel_path.split("/")
    return (
        any(_SPLIT_DIR.search(folder) for folder in folders)
        or bool(_SPLIT_FILE.search(name))
        or bool(_SHARDED.match(rel_path))
    )


def _neutral_name(utt_id: str, suffix: str) -> str:
    return f"audio/{hashlib.blake2b(utt_id.encode('utf-8', 'surrogatepass'), digest_size=8).hexdigest()}{suffix}"


def place_file(source: Path, target: Path, link: bool) -> str:
    """Put `source` at `target` as a hard link when `link` allows it, else a copy; returns "linked" or "copied"."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(source, target)
            return "linked"
        except OSError:
            pass  # another file system, or links not allowed: copy instead
    shutil.copyfile(source, target)
    return "copied"


def write_audiofolder(
    rows: list[ExportRow], columns: list[str], folder: Path, pseudonymous: bool, link: bool = True
) -> list[str]:
    """Write audio and metadata.jsonl into `folder` (which exists and is empty); return notes.

    One JSON object per line: `file_name`, `utt_id`, `speaker` and the label
    `columns`, every value a string or null (missing).
    """
    header = ["file_name", "utt_id", "speaker"] + [c for c in columns if c not in ("file_name", "utt_id", "speaker")]
    placed = {"linked": 0, "copied": 0}
    records = []
    # A pseudonymous export must not keep the original tree (folder names carry speakers).
    names = [
        f"{row.utt_id}{PurePosixPath(row.output_path).suffix or '.wav'}" if pseudonymous else row.output_path
        for row in rows
    ]
    neutral = any(names_a_split(name) for name in names)
    if neutral:
        names = [_neutral_name(row.utt_id, PurePosixPath(row.output_path).suffix or ".wav") for row in rows]
        if len(set(names)) != len(names):
            raise ValueError("two utterance ids hash to the same file name")  # 64-bit hash: not expected
    for row, name in zip(rows, names):
        placed[place_file(row.audio, folder / name, link)] += 1
        values = [name, row.utt_id, row.speaker] + [row.labels.get(c) for c in header[3:]]
        records.append(dict(zip(header, (None if v is None else str(v) for v in values))))
    with open(folder / METADATA, "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    notes = [f"{placed['linked']} file(s) hard-linked, {placed['copied']} copied"]
    if neutral:
        notes.append(
            "audio named audio/<hash> (the utt_id column keeps the ids): some paths hold a word "
            "(train, dev, test, ...) that Hugging Face datasets would read as a split"
        )
    return notes
