"""Label tables: a metadata file in the corpus root or a --labels file.

Follows the Hugging Face audiofolder convention: one row per file, keyed by a
`file_name` (or `path`) column relative to the corpus root, in
metadata.csv, metadata.jsonl or metadata.parquet.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path, PurePosixPath
from typing import Iterator

from anoncli.errors import InputError

KEY_COLUMNS = ("file_name", "path")
METADATA_NAMES = ("metadata.csv", "metadata.jsonl", "metadata.parquet")

GENDER_VALUES = {
    "m": "male", "male": "male", "man": "male", "masculine": "male",
    "f": "female", "female": "female", "woman": "female", "feminine": "female",
}


# Other names for the normalised label columns (Common Voice, HF datasets, lab spreadsheets).
COLUMN_ALIASES = {
    "speaker_id": "speaker", "spk": "speaker", "spk_id": "speaker", "client_id": "speaker",
    "sex": "gender", "text": "transcript", "sentence": "transcript", "transcription": "transcript",
    "emo": "emotion",
}


def normalise_columns(columns: list[str]) -> dict[str, str]:
    """Table column -> label column: `Speaker`, `speaker_id`, `sex`, `text` ... become the normalised names.

    A column already spelled like a normalised name keeps it; an alias is
    renamed only when no other column of the table claims the target name.
    """
    targets = ("speaker", "gender", "emotion", "transcript")
    names = {c: c for c in columns}
    claimed = {c for c in columns if c in targets}
    for column in columns:
        if column in targets:
            continue
        low = column.strip().lower()
        target = COLUMN_ALIASES.get(low, low)
        if target in targets and target not in claimed:
            names[column] = target
            claimed.add(target)
    return names


# Short codes used by Kaldi utt2emo files (VoicePrivacy 2024, IEMOCAP) and other tables.
EMOTION_VALUES = {
    "ang": "anger", "angry": "anger", "hap": "happiness", "happy": "happiness", "joy": "happiness",
    "sad": "sadness", "neu": "neutral", "fea": "fear", "fearful": "fear", "dis": "disgust",
    "disgusted": "disgust", "sur": "surprise", "surprised": "surprise", "cal": "calm", "bor": "boredom",
    "bored": "boredom",
}


def normalise_emotion(value: str | None) -> str | None:
    """`ANG`, `angry`, `Anger` -> `anger`; unknown names are kept (lower-case)."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if not text:
        return None
    return EMOTION_VALUES.get(text, text)


def normalise_gender(value: str | None) -> str | None:
    """`M`, `m`, `Male` -> `male`; anything else is kept as written (lower-case)."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    return GENDER_VALUES.get(text.lower(), text.lower())


def _rows_from_csv(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as err:
        raise InputError(f"{path}: cannot read labels ({err.strerror or err})") from None
    with handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames:
            raise InputError(f"{path}: labels file has no header row")
        try:
            for row in reader:
                # DictReader starts at line 2 for the first data row (line 1 is the header).
                yield reader.line_num, row
        except (csv.Error, UnicodeDecodeError) as err:
            raise InputError(f"{path}: line {reader.line_num}: malformed CSV ({err})") from None


def _rows_from_jsonl(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        handle = open(path, encoding="utf-8-sig")
    except OSError as err:
        raise InputError(f"{path}: cannot read labels ({err.strerror or err})") from None
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise InputError(f"{path}: line {number}: not a JSON object ({err.msg})") from None
                if not isinstance(row, dict):
                    raise InputError(f"{path}: line {number}: not a JSON object")
                yield number, row
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text") from None


def _rows_from_parquet(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several unrelated types for a bad file
        raise InputError(f"{path}: cannot read Parquet labels ({err})") from None
    for index, row in enumerate(table.to_pylist()):
        yield index + 1, row


def read_label_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (row number, row) where the row number is the one a user sees in the file."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return _rows_from_parquet(path)
    if suffix in (".jsonl", ".ndjson"):
        return _rows_from_jsonl(path)
    return _rows_from_csv(path)


def _clean(value) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def load_labels(path: Path, root: Path) -> tuple[dict[str, dict[str, str | None]], list[str]]:
    """Map corpus-relative posix paths to label dicts; return them with the label column names.

    A row naming a file that does not exist, or a path that leaves the corpus
    folder, is an InputError naming the row. Column names are normalised
    (`speaker_id`, `Sex`, `text` -> speaker, gender, transcript), `gender`
    values to male/female (M, f, Male ...) and `emotion` codes to English
    names (ANG -> anger).
    """
    root_resolved = root.resolve()
    labels: dict[str, dict[str, str | None]] = {}
    columns: list[str] = []
    key = None
    where = "row" if path.suffix.lower() in (".parquet", ".pq") else "line"
    for line, row in read_label_rows(path):
        if key is None:
            key = next((k for k in KEY_COLUMNS if k in row), None)
            if key is None:
                raise InputError(f"{path}: labels need a 'file_name' or 'path' column (found: {', '.join(row)})")
            columns = [c for c in row if c not in KEY_COLUMNS and c]
            names = normalise_columns(columns)
        raw = _clean(row.get(key))
        if raw is None:
            raise InputError(f"{path}: {where} {line}: empty {key}")
        rel = PurePosixPath(raw.replace("\\", "/"))
        target = (root / rel).resolve()
        if rel.is_absolute() or not target.is_relative_to(root_resolved):
            raise InputError(f"{path}: {where} {line}: {raw!r} is outside the corpus folder {root}")
        if not target.is_file():
            raise InputError(f"{path}: {where} {line}: {raw!r} does not exist in {root}")
        rel_key = target.relative_to(root_resolved).as_posix()
        if rel_key in labels:
            raise InputError(f"{path}: {where} {line}: {raw!r} is listed twice")
        values = {names[c]: _clean(row.get(c)) for c in columns}
        if "gender" in values:
            values["gender"] = normalise_gender(values["gender"])
        if "emotion" in values:
            values["emotion"] = normalise_emotion(values["emotion"])
        labels[rel_key] = values
    return labels, [names[c] for c in columns] if key is not None else columns


def find_metadata(root: Path) -> Path | None:
    for name in METADATA_NAMES:
        candidate = root / name
        if candidate.is_file():
            return candidate
    return None
