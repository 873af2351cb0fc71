"""The manifest's columns. Label columns vary by corpus and are added as strings."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

FIXED_FIELDS = [
    pa.field("utt_id", pa.string(), nullable=False),
    pa.field("source_path", pa.string()),
    pa.field("output_path", pa.string()),
    pa.field("features_path", pa.string()),
    pa.field("speaker", pa.string()),
]
TAIL_FIELDS = [
    pa.field("duration_s", pa.float64()),
    pa.field("sample_rate", pa.int32()),
    pa.field("output_sample_rate", pa.int32()),
    pa.field("method", pa.string()),
    pa.field("params", pa.string()),
    pa.field("seed", pa.int64()),
    pa.field("status", pa.string(), nullable=False),
    pa.field("error", pa.string()),
    # A remark on an ok row a user should see (e.g. a mono mixdown that cancelled the channels).
    pa.field("note", pa.string()),
    pa.field("elapsed_s", pa.float64()),
    pa.field("anoncli_version", pa.string()),
]
# Attributes the shipped attackers score: `{attribute}_p_orig` and `{attribute}_p_anon` columns.
SCORE_ATTRIBUTES = ("gender", "emotion")
# Per-utterance scores (anoncli.scoring.quick_scores): NaN where a score could not be computed, with the
# reason in score_notes; null when scores were not computed (--no-score, failed rows, an attribute the
# corpus does not label).
SCORE_FIELDS = [
    pa.field("link_cosine", pa.float64()),
    pa.field("asv_score", pa.float64()),
    *(pa.field(f"{attribute}_p_{side}", pa.float64()) for attribute in SCORE_ATTRIBUTES for side in ("orig", "anon")),
    pa.field("stoi", pa.float64()),
    pa.field("f0_r", pa.float64()),
    pa.field("duration_ratio", pa.float64()),
    pa.field("level_change_db", pa.float64()),
    pa.field("score_notes", pa.string()),
]
SCORE_VALUE_COLUMNS = [f.name for f in SCORE_FIELDS if f.type == pa.float64()]
STATUS_OK = "ok"
STATUS_FAILED = "failed"
CONFIG_KEY = b"anoncli.config"


def manifest_schema(label_columns: list[str], config: dict[str, Any] | None = None) -> pa.Schema:
    fixed = {f.name for f in FIXED_FIELDS + TAIL_FIELDS + SCORE_FIELDS}
    labels = [pa.field(c, pa.string()) for c in label_columns if c not in fixed]
    schema = pa.schema(FIXED_FIELDS + labels + TAIL_FIELDS + SCORE_FIELDS)
    if config is not None:
        schema = schema.with_metadata({CONFIG_KEY: json.dumps(config, sort_keys=True, default=str).encode()})
    return schema


def run_config(schema: pa.Schema) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(CONFIG_KEY)
    return json.loads(raw) if raw else {}
