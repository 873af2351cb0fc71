"""The rows an export writes: the `ok` rows of an anonymized output folder's manifest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from anoncli.corpus.walk import fs_name
from anoncli.errors import InputError
from anoncli.manifest.reader import read_manifest
from anoncli.manifest.schema import STATUS_OK, ManifestRow

# Manifest columns that describe the run, not the utterance: never exported as labels.
RUN_COLUMNS = set(ManifestRow.run_columns())


@dataclass
class ExportRow:
    """One exported utterance: id, speaker, absolute audio path, path relative to the output, and labels."""

    utt_id: str
    speaker: str | None
    audio: Path  # absolute path of the anonymized file
    output_path: str  # relative to the output folder
    labels: dict[str, str | None]


def read_output_rows(out: Path) -> tuple[list[ExportRow], list[str], int]:
    """Rows with status ok, sorted by utterance id; their label columns; how many rows were skipped."""
    table = read_manifest(out)
    columns = table.column_names
    for needed in ("utt_id", "output_path", "status"):
        if needed not in columns:
            raise InputError(f"{out}: manifest has no {needed!r} column")
    label_columns = [c for c in columns if c not in RUN_COLUMNS]
    rows: list[ExportRow] = []
    skipped = 0
    out_abs = out.resolve()
    for record in table.to_pylist():
        row = ManifestRow.from_record(record)
        if row.status != STATUS_OK or not row.output_path:
            skipped += 1
            continue
        audio = out_abs / fs_name(row.output_path)
        if not audio.resolve().is_relative_to(out_abs.resolve()):
            raise InputError(f"{out}: manifest row {row.utt_id!r} points outside the output folder")
        if not audio.is_file():
            raise InputError(f"{audio}: listed as done in the manifest but missing (rerun anonymize to resume)")
        labels = {c: (None if row.labels.get(c) is None else str(row.labels[c])) for c in label_columns}
        rows.append(ExportRow(row.utt_id, row.speaker, audio, row.output_path, labels))
    rows.sort(key=lambda r: r.utt_id)
    if not rows:
        features = sum(
            1 for record in table.to_pylist() if record.get("status") == STATUS_OK and record.get("features_path")
        )
        if features:
            raise InputError(
                f"{out}: its {features} finished utterances are feature vectors (features/*.npy), "
                "not audio: there is nothing to export as a Kaldi or audio folder"
            )
        raise InputError(f"{out}: no finished (status ok) utterances to export")
    return rows, label_columns, skipped
