"""Reading an output folder's manifest as one table."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from anoncli.errors import InputError
from anoncli.manifest.layout import part_files, pending_files
from anoncli.manifest.schema import run_config


def read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file of a manifest; a damaged or foreign file is an InputError naming it (exit 2, not a crash).

    Read with `ParquetFile`, not `pq.read_table`, which imports pyarrow's
    dataset layer and pandas (about 0.3 s) for a job that reads a few
    small files.
    """
    try:
        with pq.ParquetFile(path) as parquet:
            return parquet.read(columns=columns)
    except (pa.ArrowException, OSError) as err:
        raise InputError(f"{path}: {_unreadable(err)}") from None


def read_parquet_schema(path: Path) -> pa.Schema:
    """The Arrow schema of one manifest file; a damaged or foreign file is an InputError naming it (exit 2)."""
    try:
        return pq.read_schema(path)
    except (pa.ArrowException, OSError) as err:
        raise InputError(f"{path}: {_unreadable(err)}") from None


def _unreadable(err: BaseException) -> str:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (
        f"not a readable anoncli manifest file ({reason}); move it out of the folder (anonymize then redoes its files)"
    )


def manifest_files(out: Path) -> list[Path]:
    """Finished parts first, then batches of shards still running or killed."""
    return part_files(Path(out)) + pending_files(Path(out))


def read_manifest(out: str | Path, columns: list[str] | None = None) -> pa.Table:
    """All rows of an output folder (or of one manifest .parquet file), one per utterance.

    Rows of pending batches that were already merged into a part are dropped,
    so every utterance appears once.
    """
    out = Path(out)
    if out.is_file():
        return read_parquet(out, columns)
    files = manifest_files(out)
    if not files:
        raise InputError(f"{out}: no anoncli manifest (expected {out}/manifest/part-*.parquet)")
    tables = []
    seen: set[str] = set()
    for path in files:
        table = read_parquet(path, columns)
        if "utt_id" in table.column_names:
            table = keep_unseen(table, seen)
            seen.update(table.column("utt_id").to_pylist())
        tables.append(table.replace_schema_metadata(None))
    merged = pa.concat_tables(tables, promote_options="default")
    return merged.replace_schema_metadata(read_parquet_schema(files[0]).metadata)


STAMP_COLUMNS = ("source_size", "source_mtime_ns", "source_sha256")


def keep_unseen(table: pa.Table, seen: set[str]) -> pa.Table:
    """The rows of `table` whose utt_id is not in `seen` (the table itself when none is)."""
    keep = [u not in seen for u in table.column("utt_id").to_pylist()]
    return table if all(keep) else table.filter(pa.array(keep))


def first_rows(out: Path, columns: list[str]) -> dict[str, tuple]:
    """utt_id -> the values of `columns` in the utterance's first row (parts before pending batches), in one
    pass over the manifest files; a column a file lacks (written by an earlier version) reads as None."""
    rows: dict[str, tuple] = {}
    for path in manifest_files(out):
        names = set(read_parquet_schema(path).names)
        present = [c for c in columns if c in names]
        table = read_parquet(path, ["utt_id", *present])
        values = [table.column(c).to_pylist() if c in present else [None] * table.num_rows for c in columns]
        for utt, *row in zip(table.column("utt_id").to_pylist(), *values):
            rows.setdefault(utt, tuple(row))
    return rows


def status_by_utt(out: Path) -> dict[str, str]:
    """utt_id -> status for every row already written (parts and pending batches)."""
    return {utt: state for utt, (state,) in first_rows(out, ["status"]).items()}


def manifest_config(out: Path) -> dict:
    """The run configuration stored in the schema metadata of the first part, else of the first batch file
    a killed first run left unmerged; {} when there is neither."""
    for path in [*part_files(Path(out)), *pending_files(Path(out))]:
        config = run_config(read_parquet_schema(path))
        if config:
            return config
    return {}
