"""Crash-safe manifest writing.

Each finished batch is written as its own small Parquet file (temp name, then
rename) under `manifest/.pending/part-K-of-N/`. When the shard ends, the
pending files are streamed, together with the shard's earlier part, into a new
`part-K-of-N.parquet` that replaces the old one atomically. A job killed at any
moment therefore leaves only complete files, and a rerun finds every row that
was written.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from anoncli.atomic import temp_path_for
from anoncli.manifest.layout import part_files, part_path, pending_dir, pending_files
from anoncli.manifest.schema import ManifestRow

ROW_GROUP_SIZE = 256
_batch_counter = itertools.count()


def _atomic_write_table(table: pa.Table, path: Path) -> None:
    tmp = temp_path_for(path)  # a name the stale-temp sweep of a resumed run recognises
    try:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_SIZE)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_batch(out: Path, shard: tuple[int, int], rows: list[ManifestRow | dict], schema: pa.Schema) -> Path:
    """Persist one batch's rows (`ManifestRow`s or their flat records); returns the pending file's path."""
    folder = pending_dir(out, *shard)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"batch-{time.time_ns():020d}-{os.getpid()}-{next(_batch_counter):06d}.parquet"
    path = folder / name
    records = [row.to_record() if isinstance(row, ManifestRow) else row for row in rows]
    _atomic_write_table(pa.Table.from_pylist(records, schema=schema.remove_metadata()), path)
    return path


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Reorder/cast a table to `schema`, filling columns it lacks with nulls."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _iter_tables(path: Path) -> Iterator[pa.Table]:
    parquet = pq.ParquetFile(path)
    for index in range(parquet.num_row_groups):
        yield parquet.read_row_group(index)


def _utt_ids(path: Path) -> set[str]:
    return set(pq.read_table(path, columns=["utt_id"]).column("utt_id").to_pylist())


def finalize_part(out: Path, shard: tuple[int, int], schema: pa.Schema) -> Path | None:
    """Merge the shard's pending batch files into its part file, streaming, then drop them."""
    target = part_path(out, *shard)
    pending = sorted(pending_dir(out, *shard).glob("batch-*.parquet"))
    if not pending and target.exists():
        return target
    if not pending and not target.exists():
        return None
    tmp = temp_path_for(target)
    # A pending row already present in the part means an earlier merge finished
    # but was killed before removing its pending files: keep the merged row.
    seen = _utt_ids(target) if target.exists() else set()
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            if target.exists():
                for table in _iter_tables(target):
                    writer.write_table(conform(table, schema), row_group_size=ROW_GROUP_SIZE)
            for path in pending:
                table = pq.read_table(path)
                if seen:
                    keep = pa.array([u not in seen for u in table.column("utt_id").to_pylist()])
                    table = table.filter(keep)
                seen.update(table.column("utt_id").to_pylist())
                if table.num_rows:
                    writer.write_table(conform(table, schema), row_group_size=ROW_GROUP_SIZE)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    for path in pending:
        path.unlink(missing_ok=True)
    try:
        pending_dir(out, *shard).rmdir()
        pending_dir(out, *shard).parent.rmdir()
    except OSError:
        pass
    return target


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
        table = pq.read_table(path)
        keep = pa.array([u not in doomed for u in table.column("utt_id").to_pylist()])
        table = table.filter(keep)
        if table.num_rows == 0:
            path.unlink()
            continue
        _atomic_write_table(table, path)
    return removed
