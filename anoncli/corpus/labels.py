"""Label tables: a metadata.csv in the corpus root or a --labels file (CSV or Parquet).

Follows the Hugging Face audiofolder convention: one row per file, keyed by a
`file_name` (or `path`) column relative to the corpus root.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath
from typing import Iterator

from anoncli.errors import InputError

KEY_COLUMNS = ("file_name", "path")
METADATA_NAMES = ("metadata.csv", "metadata.parquet")


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
    if path.suffix.lower() in (".parquet", ".pq"):
        return _rows_from_parquet(path)
    return _rows_from_csv(path)


def _clean(value) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def load_labels(path: Path, root: Path) -> tuple[dict[str, dict[str, str | None]], list[str]]:
    """Map corpus-relative posix paths to label dicts; return them with the label column names.

    A row naming a file that does not exist, or a path that leaves the corpus
    folder, is an InputError naming the row.
    """
    root_resolved = root.resolve()
    labels: dict[str, dict[str, str | None]] = {}
    columns: list[str] = []
    key = None
    for line, row in read_label_rows(path):
        if key is None:
            key = next((k for k in KEY_COLUMNS if k in row), None)
            if key is None:
                raise InputError(f"{path}: labels need a 'file_name' or 'path' column (found: {', '.join(row)})")
            columns = [c for c in row if c not in KEY_COLUMNS and c]
        where = "line" if path.suffix.lower() == ".csv" else "row"
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
        labels[rel_key] = {c: _clean(row.get(c)) for c in columns}
    return labels, columns


def find_metadata(root: Path) -> Path | None:
    for name in METADATA_NAMES:
        candidate = root / name
        if candidate.is_file():
            return candidate
    return None
