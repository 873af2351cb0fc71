"""The manifest's columns: one row dataclass, `ManifestRow`, owns them and the Arrow schema built from them.

A row has the fixed columns (its fields, in schema order), the corpus's
label columns (`labels`, strings, placed after `speaker`) and the
per-utterance scores (`scores`, the `SCORE_COLUMNS`, placed last). The
worker builds rows, the scorers fill `scores`, the writer turns rows into
Arrow tables with `ManifestRow.arrow_schema`, and readers turn records back
into rows with `ManifestRow.from_record`; nobody else lists the columns.
pyarrow is imported only when a schema is built.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

STATUS_OK = "ok"
STATUS_FAILED = "failed"
CONFIG_KEY = b"anoncli.config"

# Attributes the shipped attackers score: `{attribute}_p_orig` and `{attribute}_p_anon` columns.
SCORE_ATTRIBUTES = ("gender", "emotion")
# Per-utterance scores (anoncli.scoring.quick_scores), column -> Arrow type: NaN where a score could not
# be computed, with the reason in score_notes; null when scores were not computed (--no-score, failed
# rows, an attribute the corpus does not label).
SCORE_COLUMNS: dict[str, str] = {
    "link_cosine": "float64",
    "asv_score": "float64",
    **{f"{attribute}_p_{side}": "float64" for attribute in SCORE_ATTRIBUTES for side in ("orig", "anon")},
    "stoi": "float64",
    "f0_r": "float64",
    "duration_ratio": "float64",
    "level_change_db": "float64",
    "score_notes": "string",
}
SCORE_VALUE_COLUMNS = [name for name, kind in SCORE_COLUMNS.items() if kind == "float64"]


def _column(arrow: str, nullable: bool = True) -> Any:
    """A fixed manifest column: a dataclass field (default None) that records its Arrow type."""
    return field(default=None, metadata={"arrow": arrow, "nullable": nullable})


@dataclass
class ManifestRow:
    """One utterance's manifest row.

    Fixed columns are the fields below, in schema order; `labels` (the
    corpus's label columns, strings) go after `speaker` and `scores` (keys
    of `SCORE_COLUMNS`) at the end. `status` is STATUS_OK or STATUS_FAILED
    (then `error` says why); times are seconds, rates Hz.
    """

    utt_id: str = field(metadata={"arrow": "string", "nullable": False})
    source_path: str | None = _column("string")
    output_path: str | None = _column("string")
    features_path: str | None = _column("string")
    speaker: str | None = _column("string")
    labels: dict[str, str | None] = field(default_factory=dict)
    duration_s: float | None = _column("float64")
    sample_rate: int | None = _column("int32")
    output_sample_rate: int | None = _column("int32")
    method: str | None = _column("string")
    params: str | None = _column("string")
    seed: int | None = _column("int64")
    status: str | None = _column("string", nullable=False)
    error: str | None = _column("string")
    # A remark on an ok row a user should see (e.g. a mono mixdown that cancelled the channels).
    note: str | None = _column("string")
    elapsed_s: float | None = _column("float64")
    anoncli_version: str | None = _column("string")
    # The input's size (bytes), modification time (ns) and SHA-256 when it was read, so that a rerun
    # redoes an input whose bytes changed; null for piped commands and pseudonymized runs.
    source_size: int | None = _column("int64")
    source_mtime_ns: int | None = _column("int64")
    source_sha256: str | None = _column("string")
    scores: dict[str, Any] = field(default_factory=dict)

    # ---- the columns --------------------------------------------------------------------------------------
    @classmethod
    def fixed_columns(cls) -> dict[str, tuple[str, bool]]:
        """Fixed column name -> (Arrow type name, nullable), in schema order (labels go after `speaker`)."""
        cached = cls.__dict__.get("_fixed_columns")
        if cached is None:
            cached = {
                f.name: (f.metadata["arrow"], f.metadata["nullable"]) for f in fields(cls) if "arrow" in f.metadata
            }
            cls._fixed_columns = cached  # once per class: rows are built by the thousand
        return cached

    @classmethod
    def run_columns(cls) -> list[str]:
        """Every column that is not a label: the fixed columns, then the score columns."""
        return [*cls.fixed_columns(), *SCORE_COLUMNS]

    @classmethod
    def arrow_fields(cls, group: str) -> list[pa.Field]:
        """The Arrow fields of one group of columns: "head" (up to `speaker`), "tail" (after the labels) or "scores"."""
        import pyarrow as pa

        if group == "scores":
            return [pa.field(name, getattr(pa, kind)()) for name, kind in SCORE_COLUMNS.items()]
        names = list(cls.fixed_columns().items())
        cut = [name for name, _ in names].index("speaker") + 1
        chosen = names[:cut] if group == "head" else names[cut:] if group == "tail" else None
        if chosen is None:
            raise ValueError(f"unknown column group {group!r}")
        return [pa.field(name, getattr(pa, kind)(), nullable=nullable) for name, (kind, nullable) in chosen]

    @classmethod
    def arrow_schema(cls, label_columns: Iterable[str], config: dict[str, Any] | None = None) -> pa.Schema:
        """The manifest schema for a corpus's label columns (strings; names taken by run columns are left out),
        with the run configuration as JSON in the metadata under CONFIG_KEY when given."""
        import pyarrow as pa

        reserved = set(cls.run_columns())
        labels = [pa.field(c, pa.string()) for c in label_columns if c not in reserved]
        schema = pa.schema(cls.arrow_fields("head") + labels + cls.arrow_fields("tail") + cls.arrow_fields("scores"))
        if config is not None:
            schema = schema.with_metadata({CONFIG_KEY: json.dumps(config, sort_keys=True, default=str).encode()})
        return schema

    # ---- one row ------------------------------------------------------------------------------------------
    def to_record(self) -> dict[str, Any]:
        """The row as one flat dict, column -> value (labels and scores spread out), ready for Arrow."""
        record: dict[str, Any] = {}
        for name in self.fixed_columns():
            record[name] = getattr(self, name)
            if name == "speaker":
                record.update((k, v) for k, v in self.labels.items() if k not in record)
        record.update(self.scores)
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ManifestRow:
        """A row from a flat record (a manifest table's `to_pylist()` item): unknown columns become labels."""
        fixed = cls.fixed_columns()
        values = {k: v for k, v in record.items() if k in fixed}
        scores = {k: v for k, v in record.items() if k in SCORE_COLUMNS}
        labels = {k: v for k, v in record.items() if k not in fixed and k not in SCORE_COLUMNS}
        return cls(**values, labels=labels, scores=scores)

    def set(self, column: str, value: Any) -> None:
        """Set one column by name: a fixed column, a score column, or else a label."""
        if column in self.fixed_columns():
            setattr(self, column, value)
        elif column in SCORE_COLUMNS:
            self.scores[column] = value
        else:
            self.labels[column] = value

    def update(self, values: Mapping[str, Any] | None = None, **more: Any) -> None:
        """Set several columns by name (see `set`), like dict.update."""
        for column, value in {**(values or {}), **more}.items():
            self.set(column, value)

    __setitem__ = set

    def fail(self, message: str, elapsed_s: float) -> ManifestRow:
        """Mark the row failed with a one-line `message`; returns it."""
        self.status, self.error, self.elapsed_s = STATUS_FAILED, message, elapsed_s
        return self


def manifest_schema(label_columns: list[str], config: dict[str, Any] | None = None) -> pa.Schema:
    """`ManifestRow.arrow_schema`: the manifest schema for a corpus's label columns (and run configuration)."""
    return ManifestRow.arrow_schema(label_columns, config)


def run_config(schema: pa.Schema) -> dict[str, Any]:
    """The run configuration stored in a manifest schema's metadata ({} when absent)."""
    raw = (schema.metadata or {}).get(CONFIG_KEY)
    return json.loads(raw) if raw else {}


def __getattr__(name: str) -> Any:
    # The Arrow field lists of earlier versions, built on first use so that importing this module needs no pyarrow.
    groups = {"FIXED_FIELDS": "head", "TAIL_FIELDS": "tail", "SCORE_FIELDS": "scores"}
    if name in groups:
        return ManifestRow.arrow_fields(groups[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
