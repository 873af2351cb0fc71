"""Crash-safe manifest writing.

Each finished batch is written as its own small Parquet file (temp name, then
rename) under `manifest/.pending/part-K-of-N/`. When the shard ends, the
pending files are streamed, together with the shard's earlier part, into a new
`part-K-of-N.parquet` that replaces the old one atomically. A job killed at any
moment therefore leaves only complete files, and a rerun finds every row that
was written.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from anoncli.atomic import atomic_path, temp_path_for
from anoncli.manifest.layout import part_files, part_path, pending_dir, pending_files
from anoncli.manifest.reader import keep_unseen, read_parquet
from anoncli.manifest.schema import ManifestRow

ROW_GROUP_SIZE = 256
_batch_counter = itertools.count()


def _atomic_write_table(table: pa.Table, path: Path) -> None:
    with atomic_path(path, make_parents=False) as tmp:  # a temp name the stale-temp sweep of a resumed run recognises
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_SIZE)


def _json_value(value: object) -> object:
    """A numpy scalar as the Python number JSON can write (json.dumps calls this for types it does not know)."""
    item = getattr(value, "item", None)
    if item is None:
        raise TypeError(f"manifest value of type {type(value).__name__} is not a string, number or None")
    return item()


# json.dumps writes a lone surrogate as an escape that Arrow's JSON reader refuses (strings are UTF-8).
_SURROGATE = re.compile(r"\\ud[89a-f]", re.IGNORECASE)


def _valid_text(value: object) -> object:
    """A string with lone surrogates as valid text: escaped bytes back to bytes, read as UTF-8, and every byte
    that is not UTF-8 as `\\xNN` (`caf\\udce9` -> `caf\\xe9`); any other value unchanged."""
    if not isinstance(value, str):
        return value
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that escapes no byte (from a JSON "\\ud800")
        raw = value.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "backslashreplace")


def records_table(records: list[dict], schema: pa.Schema) -> pa.Table:
    """Flat records (column -> str, int, float, NaN or None) as a table of exactly `schema`'s columns and types.

    Keys that are not in `schema` are ignored and missing ones are null, as
    with `pa.Table.from_pylist`. The rows go through Arrow's JSON reader
    rather than `from_pylist`, because pyarrow imports pandas (about 0.5 s)
    on its first conversion from Python objects and the reader does not;
    NaN and infinities are kept (Python's json writes them as NaN/Infinity,
    which the reader accepts), and floats are written in round-trip form.
    """
    import pyarrow.json as pa_json

    plain = schema.remove_metadata()
    if not records:
        return schema.empty_table()
    text = "\n".join(json.dumps(record, default=_json_value) for record in records)
    if _SURROGATE.search(text):  # a file name's bytes that Python decoded with surrogate escapes, e.g. in an error
        text = "\n".join(
            json.dumps({k: _valid_text(v) for k, v in record.items()}, default=_json_value) for record in records
        )
    options = pa_json.ParseOptions(explicit_schema=plain, unexpected_field_behavior="ignore")
    table = pa_json.read_json(io.BytesIO(text.encode()), parse_options=options)
    # The reader refuses a null in a non-nullable column but marks every column nullable: put the flags back,
    # and the run configuration of the schema's metadata, so that a batch file a killed run left says what made it.
    return pa.Table.from_arrays(table.columns, schema=schema)


def write_batch(out: Path, shard: tuple[int, int], rows: list[ManifestRow | dict], schema: pa.Schema) -> Path:
    """Persist one batch's rows (`ManifestRow`s or their flat records); returns the pending file's path."""
    records = [row.to_record() if isinstance(row, ManifestRow) else row for row in rows]
    return write_batch_table(out, shard, records_table(records, schema))


def write_batch_table(out: Path, shard: tuple[int, int], table: pa.Table) -> Path:
    """Persist one batch's rows, already a table of the manifest schema; returns the pending file's path."""
    folder = pending_dir(out, *shard)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"batch-{time.time_ns():020d}-{os.getpid()}-{next(_batch_counter):06d}.parquet"
    path = folder / name
    _atomic_write_table(table, path)
    return path


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Reorder/cast a table to `schema`, filling columns it lacks with nulls (the table itself when it matches)."""
    if table.schema.equals(schema, check_metadata=False):
        return table
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _iter_tables(path: Path) -> Iterator[pa.Table]:
    with pq.ParquetFile(path) as parquet:
        for index in range(parquet.num_row_groups):
            yield parquet.read_row_group(index)


def _utt_ids(path: Path) -> set[str]:
    return set(read_parquet(path, ["utt_id"]).column("utt_id").to_pylist())


class PartMerger:
    """Streams a shard's manifest rows into a new part file while the job runs; `close` puts it in place.

    Opening copies the shard's current part and the batch files already
    pending (from a killed run); `add` appends each finished batch's rows as
    its result arrives, so the merge overlaps the work instead of following
    it; `close` adds the pending files not added yet (e.g. a batch a Dask
    worker wrote before it died), replaces the part atomically and deletes
    the merged batch files. A row already merged wins over a later copy of
    the same utterance (a merge that was killed before deleting its batch
    files). If the job dies first, the temporary part is swept as an
    unfinished write and the batch files are merged by the next run.
    """

    def __init__(self, out: Path, shard: tuple[int, int], schema: pa.Schema):
        self.out, self.shard, self.schema = Path(out), shard, schema
        self.target = part_path(self.out, *shard)
        self.tmp = temp_path_for(self.target)
        self.seen: set[str] = set()
        self.merged: set[Path] = set()
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> PartMerger:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _write(self, table: pa.Table) -> None:
        if self.seen:
            table = keep_unseen(table, self.seen)
        self.seen.update(table.column("utt_id").to_pylist())
        if not table.num_rows:
            return
        if self._writer is None:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.tmp, self.schema)
        self._writer.write_table(conform(table, self.schema), row_group_size=ROW_GROUP_SIZE)
        self.rows += table.num_rows

    def open(self) -> PartMerger:
        """Copy the current part, then the batch files already pending."""
        if self.target.exists():
            for table in _iter_tables(self.target):
                self._write(table)
            self.merged.add(self.target)
        self._merge_pending()
        return self

    def _merge_pending(self) -> None:
        for path in sorted(pending_dir(self.out, *self.shard).glob("batch-*.parquet")):
            if path not in self.merged:
                self._write(read_parquet(path))
                self.merged.add(path)

    def add(self, rows: list[dict] | pa.Table, pending_file: str | os.PathLike | None = None) -> None:
        """Append one batch's rows (flat records, or the table `records_table` made of them);
        `pending_file` is the batch file that holds them."""
        if pending_file is not None:
            self.merged.add(Path(pending_file))
        table = rows if isinstance(rows, pa.Table) else records_table(rows, self.schema)
        if table.num_rows:
            self._write(table)

    def close(self) -> Path | None:
        """Merge what is still pending, put the part in place, delete the merged batch files."""
        self._merge_pending()
        if self._writer is None:  # nothing at all: no part (or the old one untouched)
            return self.target if self.target.exists() else None
        self._writer.close()
        self._writer = None
        os.replace(self.tmp, self.target)
        for path in self.merged - {self.target}:
            path.unlink(missing_ok=True)
        try:
            pending_dir(self.out, *self.shard).rmdir()
            pending_dir(self.out, *self.shard).parent.rmdir()
        except OSError:
            pass
        return self.target

    def abort(self) -> None:
        """Drop the temporary part; the part and the batch files stay as they were."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.tmp.unlink(missing_ok=True)


def finalize_part(out: Path, shard: tuple[int, int], schema: pa.Schema) -> Path | None:
    """Merge the shard's pending batch files into its part file, streaming, then drop them."""
    target = part_path(out, *shard)
    if not any(pending_dir(out, *shard).glob("batch-*.parquet")):
        return target if target.exists() else None
    merger = PartMerger(out, shard, schema)
    try:
        merger.open()
        return merger.close()
    except BaseException:
        merger.abort()
        raise


def remove_rows(out: Path, utt_ids: Iterable[str]) -> int:
    """Drop the rows of `utt_ids` from every part and pending file (before they are redone)."""
    doomed = set(utt_ids)
    if not doomed:
        return 0
    removed = 0
    for path in part_files(out) + pending_files(out):
        ids = _utt_ids(path)
        hit = ids & doomed
        if not hit:
            continue
        removed += len(hit)
        table = keep_unseen(read_parquet(path), doomed)
        if table.num_rows == 0:
            path.unlink()
            continue
        _atomic_write_table(table, path)
    return removed
