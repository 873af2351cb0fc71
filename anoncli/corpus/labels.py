"""Label tables: a metadata file in the corpus root or a --labels file.

Follows the Hugging Face audiofolder convention: one row per file, keyed by a
`file_name` (or `path`) column relative to the corpus root, in
metadata.csv, metadata.jsonl or metadata.parquet. CSV files may use `,`,
`;`, tab or `|` as separator (sniffed from the header, or `--labels-sep`),
and may be UTF-8 or carry a UTF-16/32 byte order mark. Every malformed table
is an InputError of one line naming the file and the line.
"""

from __future__ import annotations

import csv
import io
import json
import os
import posixpath
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from anoncli.corpus.walk import fs_name
from anoncli.errors import InputError

KEY_COLUMNS = ("file_name", "path")
METADATA_NAMES = ("metadata.csv", "metadata.jsonl", "metadata.parquet")

GENDER_VALUES = {
    "m": "male",
    "male": "male",
    "man": "male",
    "masculine": "male",
    "f": "female",
    "female": "female",
    "woman": "female",
    "feminine": "female",
}


# Cells that spreadsheets, R, pandas and SQL exports write for "no value" (compared case-insensitively):
# a missing label, never a class. The transcript is text and keeps them (an utterance may say "None").
MISSING_MARKERS = frozenset({"", "na", "n/a", "nan", "null", "none", "-"})
TEXT_COLUMNS = frozenset({"transcript"})


def is_missing(value) -> bool:
    """Whether a label cell means "no value": None, or a `MISSING_MARKERS` text (`NA`, `N/A`, `NaN`, ` null `)."""
    return value is None or str(value).strip().lower() in MISSING_MARKERS


def label_value(column: str, value) -> str | None:
    """A label cell as the corpus keeps it: stripped text, None when empty or (except in `TEXT_COLUMNS`) a
    missing marker."""
    text = _clean(value)
    if text is None or (column not in TEXT_COLUMNS and is_missing(text)):
        return None
    return text


# Other names for the normalised label columns (Common Voice, HF datasets, lab spreadsheets).
COLUMN_ALIASES = {
    "speaker_id": "speaker",
    "spk": "speaker",
    "spk_id": "speaker",
    "client_id": "speaker",
    "sex": "gender",
    "text": "transcript",
    "sentence": "transcript",
    "transcription": "transcript",
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
    "ang": "anger",
    "angry": "anger",
    "hap": "happiness",
    "happy": "happiness",
    "joy": "happiness",
    "sad": "sadness",
    "neu": "neutral",
    "fea": "fear",
    "fearful": "fear",
    "dis": "disgust",
    "disgusted": "disgust",
    "sur": "surprise",
    "surprised": "surprise",
    "cal": "calm",
    "bor": "boredom",
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


# Separators tried, in this order of preference, when --labels-sep is not given.
SEPARATORS = (",", ";", "\t", "|")
_SEP_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}


def parse_separator(sep: str | None) -> str | None:
    """`--labels-sep` value -> one character (`tab` and a typed backslash-t mean a tab); None sniffs."""
    if sep is None or sep == "":
        return None
    sep = _SEP_NAMES.get(sep.lower(), sep)
    if len(sep) != 1 or sep in '"\r\n':
        raise InputError(f"--labels-sep {sep!r}: expected one character such as ',', ';', '|' or 'tab'")
    return sep


def _decode_text(path: Path, data: bytes) -> str:
    """UTF-8 (with or without BOM), or UTF-16/32 with a BOM; else an error naming the line."""
    for bom, encoding in (
        (b"\xef\xbb\xbf", "utf-8-sig"),
        (b"\xff\xfe\x00\x00", "utf-32"),
        (b"\x00\x00\xfe\xff", "utf-32"),
        (b"\xff\xfe", "utf-16"),
        (b"\xfe\xff", "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as err:
                raise InputError(
                    f"{path}: not valid {encoding.upper()} text despite its byte order mark ({err.reason})"
                ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise InputError(
            f"{path}: line {line}: not UTF-8 text (byte 0x{data[err.start]:02x} at column {column}); "
            "save the file as UTF-8"
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        raise InputError(f"{path}: line {text.count(chr(10), 0, nul) + 1}: holds a NUL byte (not a text file?)")
    return text


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a labels file") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read labels ({err.strerror or err})") from None


def _fields(line: str, sep: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=sep), [])
    except csv.Error:
        return []


def sniff_separator(header_line: str) -> str:
    """The separator that makes a key column (`file_name`/`path`) appear in the header, else the one giving most columns."""
    fitting = []
    for sep in SEPARATORS:
        names = [f.strip().lower() for f in _fields(header_line, sep)]
        if any(name in KEY_COLUMNS for name in names):
            fitting.append((len(names), sep))
    if fitting:
        return max(fitting, key=lambda f: f[0])[1]  # max keeps the first of equal counts
    return max(((len(_fields(header_line, sep)), sep) for sep in SEPARATORS), key=lambda f: f[0])[1]


def _rows_from_csv(path: Path, sep: str | None = None) -> Iterator[tuple[str, dict[str, str]]]:
    text = _decode_text(path, _read_bytes(path))
    first = next((line for line in text.splitlines() if line.strip()), None)
    if first is None:
        raise InputError(f"{path}: labels file is empty (no header row)")
    given = sep is not None
    sep = sep if given else sniff_separator(first)
    shown = "tab" if sep == "\t" else repr(sep)
    hint = "" if given else f" (read with {shown} as separator; pass --labels-sep to choose another)"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    header: list[str] | None = None
    line = 1
    try:
        for fields in reader:
            start, line = line, reader.line_num + 1  # a quoted value may span lines: report where the row starts
            if not any(f.strip() for f in fields):
                continue
            if header is None:
                header = [f.strip() for f in fields]
                seen: set[str] = set()
                for name in header:
                    if name and name in seen:
                        raise InputError(f"{path}: line {start}: column {name!r} appears twice in the header{hint}")
                    seen.add(name)
                if _key_column(header) is None:
                    found = ", ".join(repr(c) for c in header[:10])
                    raise InputError(f"{path}: labels need a 'file_name' or 'path' column (found: {found}){hint}")
                continue
            if len(fields) > len(header) and not any(f.strip() for f in fields[len(header) :]):
                fields = fields[: len(header)]  # trailing separators only
            if len(fields) != len(header):
                raise InputError(
                    f"{path}: line {start}: {len(fields)} field{'s' if len(fields) != 1 else ''} where the header has "
                    f"{len(header)}{hint}; "
                    "a value holding the separator must be quoted"
                )
            yield f"line {start}", dict(zip(header, fields))
    except csv.Error as err:
        raise InputError(f"{path}: line {line}: malformed CSV ({err}){hint}") from None


def _no_duplicate_keys(path: Path, number: int):
    def hook(pairs):
        """`json.loads` object hook: the object as a dict; raises InputError on a repeated key."""
        keys = set()
        for key, _ in pairs:
            if key in keys:
                raise InputError(f"{path}: line {number}: key {key!r} appears twice in one object")
            keys.add(key)
        return dict(pairs)

    return hook


def _rows_from_jsonl(path: Path, sep: str | None = None) -> Iterator[tuple[str, dict[str, str]]]:
    text = _decode_text(path, _read_bytes(path))
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            records = json.loads(text, object_pairs_hook=_no_duplicate_keys(path, 1))
        except (json.JSONDecodeError, RecursionError) as err:
            where = f"line {err.lineno}: " if isinstance(err, json.JSONDecodeError) else ""
            raise InputError(
                f"{path}: {where}not a JSON array of objects ({getattr(err, 'msg', 'nested too deeply')})"
            ) from None
        for index, row in enumerate(records, start=1):
            if not isinstance(row, dict):
                raise InputError(f"{path}: row {index}: not a JSON object")
            yield f"row {index}", row
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, object_pairs_hook=_no_duplicate_keys(path, number))
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: line {number}: not a JSON object ({err.msg})") from None
        except RecursionError:
            raise InputError(f"{path}: line {number}: JSON nested too deeply") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}: line {number}: not a JSON object")
        yield f"line {number}", row


def _rows_from_parquet(path: Path, sep: str | None = None) -> Iterator[tuple[str, dict[str, str]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
        names = table.column_names
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise InputError(f"{path}: column {twice[0]!r} appears twice")
        rows = table.to_pylist()
    except InputError:
        raise
    except Exception as err:  # pyarrow raises several unrelated types for a bad file
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{path}: cannot read Parquet labels ({reason})") from None
    for index, row in enumerate(rows, start=1):
        yield f"row {index}", row


def read_label_rows(path: Path, sep: str | None = None) -> Iterator[tuple[str, dict[str, str]]]:
    """Yield (where, row): `line N` as a text editor counts, or `row N` of a Parquet table or JSON array.

    CSV-like tables take `sep` as separator, or sniff it from the header (the
    separator that reveals a `file_name`/`path` column); JSON Lines (and a
    `.json` array of objects) and Parquet are read by their suffix.
    """
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return _rows_from_parquet(path)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _rows_from_jsonl(path)
    return _rows_from_csv(path, parse_separator(sep))


def _clean(value) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _key_column(columns: list[str]) -> str | None:
    for key in KEY_COLUMNS:
        if key in columns:
            return key
    for key in KEY_COLUMNS:  # `File_Name`, ` path `
        for column in columns:
            if column.strip().lower() == key:
                return column
    return None


def _corpus_key(path: Path, where: str, raw: str, root: Path) -> str | None:
    """The corpus-relative posix path a label row names, checked to exist inside the corpus folder
    (None when there is no such file).

    Checked lexically (`a/../b.wav` is `b.wav`), as the walk names files: a
    corpus may hold symbolic links to audio kept elsewhere. An absolute path
    is accepted when it lies inside the corpus folder.
    """
    text = raw.replace("\\", "/")
    if PurePosixPath(text).is_absolute():  # a spreadsheet of absolute paths: fine when they lie in the corpus
        base = posixpath.normpath(Path(os.path.abspath(root)).as_posix())
        absolute = posixpath.normpath(text)
        if absolute.startswith(base.rstrip("/") + "/"):
            text = absolute[len(base.rstrip("/")) + 1 :]
    rel = PurePosixPath(text)
    normal = posixpath.normpath(text)
    if rel.is_absolute() or normal == ".." or normal.startswith("../") or re.match(r"^[A-Za-z]:", text):
        raise InputError(f"{path}: {where}: {raw!r} is outside the corpus folder {root}")
    target = root / fs_name(normal)  # the name's UTF-8 bytes, whatever Python's file system encoding
    try:
        if target.is_file():
            return normal
        broken = target.is_symlink() and not target.exists()
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: {where}: {raw!r} is not a usable file name ({err})") from None
    if broken:
        raise InputError(
            f"{path}: {where}: {raw!r} is a broken symbolic link "
            f"(points to {os.readlink(target)!r}, which does not exist)"
        )
    return None  # not in this corpus (e.g. a subset of a corpus with the whole corpus's table): counted by the caller


def load_labels(
    path: Path, root: Path, sep: str | None = None
) -> tuple[dict[str, dict[str, str | None]], list[str], int]:
    """Map corpus-relative posix paths to label dicts; return them, the label column names and how many
    rows name a file that is not in the corpus (left out: a subset of a corpus may keep the whole table).

    Every problem is an InputError of one line naming the file and the line
    (or Parquet row): no row naming a file of the corpus, a path that
    leaves the corpus folder, a broken link, a file listed twice, a row with more or fewer
    fields than the header, text that is not UTF-8. `sep` is the CSV
    separator (sniffed when None). Column names are normalised
    (`speaker_id`, `Sex`, `text` -> speaker, gender, transcript), `gender`
    values to male/female (M, f, Male ...) and `emotion` codes to English
    names (ANG -> anger).
    """
    labels: dict[str, dict[str, str | None]] = {}
    rows = list(read_label_rows(path, sep))
    if not rows:
        return labels, [], 0
    columns: list[str] = []
    for _, row in rows:  # JSON rows may differ in their keys: the union, in order of appearance
        columns.extend(c for c in row if c not in columns)
    key = _key_column(columns)
    if key is None:
        found = ", ".join(repr(c) for c in columns[:10])
        raise InputError(f"{path}: labels need a 'file_name' or 'path' column (found: {found})")
    columns = [c for c in columns if c != key and c not in KEY_COLUMNS and c and c.strip()]
    names = normalise_columns(columns)
    absent, first_absent = 0, None
    for where, row in rows:
        raw = _clean(row.get(key))
        if raw is None:
            raise InputError(f"{path}: {where}: empty {key}")
        rel_key = _corpus_key(path, where, raw, root)
        if rel_key is None:
            absent += 1
            first_absent = first_absent or f"{where}: {raw!r}"
            continue
        if rel_key in labels:
            raise InputError(f"{path}: {where}: {raw!r} is listed twice")
        values = {names[c]: label_value(names[c], row.get(c)) for c in columns}
        if "gender" in values:
            values["gender"] = normalise_gender(values["gender"])
        if "emotion" in values:
            values["emotion"] = normalise_emotion(values["emotion"])
        labels[rel_key] = values
    if not labels:
        raise InputError(
            f"{path}: none of its {len(rows)} rows names a file in {root}; the first does not exist: {first_absent}"
        )
    return labels, [names[c] for c in columns], absent


def find_metadata(root: Path) -> Path | None:
    """The first of metadata.csv, metadata.jsonl, metadata.parquet directly in `root`; None if there is none."""
    for name in METADATA_NAMES:
        candidate = root / name
        if candidate.is_file():
            return candidate
    return None
