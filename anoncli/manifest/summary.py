"""Distributions of the per-utterance scores of a manifest: what run.json and `anoncli inspect OUT` show."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa

from anoncli.manifest.schema import SCORE_VALUE_COLUMNS, STATUS_OK

PERCENTILES = (5, 50, 95)
# Where the bad end of each score lies, for `inspect --worst`: "high" (more linkable, better recognised),
# "low" (less intelligible, flatter intonation) or "far" (away from no change: |log ratio|, |dB|).
WORST_END = {"stoi": "low", "f0_r": "low", "duration_ratio": "far", "level_change_db": "far"}


def distribution(values: Iterable[float | None]) -> dict[str, Any]:
    """{"n", "nan", "mean", "p5", "p50", "p95"} of the numbers among `values` (None: not scored, not counted).

    n counts the finite values, nan the NaN ones (scores that could not be
    computed; their reasons are in score_notes); the statistics are over the
    finite values and None when there are none.
    """
    present = np.array([v for v in values if v is not None], dtype=np.float64)
    finite = present[np.isfinite(present)]
    stats: dict[str, Any] = {"n": int(finite.size), "nan": int(np.count_nonzero(np.isnan(present)))}
    stats["mean"] = round(float(finite.mean()), 6) if finite.size else None
    for q, value in zip(PERCENTILES, np.percentile(finite, PERCENTILES) if finite.size else [None] * 3):
        stats[f"p{q}"] = round(float(value), 6) if value is not None else None
    return stats


def score_distributions(table: pa.Table, utt_ids: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """{score column: `distribution`} over the ok rows of a manifest table (only `utt_ids` when given).

    Columns that no row has a value for (scores off, an attribute the corpus
    does not label) are left out.
    """
    columns = [c for c in SCORE_VALUE_COLUMNS if c in table.column_names]
    if not columns or "status" not in table.column_names:
        return {}
    data = table.select(["utt_id", "status", *columns]).to_pydict()
    keep = [
        i
        for i, status in enumerate(data["status"])
        if status == STATUS_OK and (utt_ids is None or data["utt_id"][i] in utt_ids)
    ]
    result = {}
    for column in columns:
        values = [data[column][i] for i in keep]
        if any(v is not None for v in values):
            result[column] = distribution(values)
    return result


def badness(column: str, value: float) -> float:
    """How bad one score is on a common scale (larger = worse), per `WORST_END`; NaN stays NaN."""
    end = WORST_END.get(column, "high")
    if end == "low":
        return -value
    if end == "far":
        if column == "duration_ratio":
            return abs(math.log(value)) if value > 0 else math.inf
        return abs(value)
    return value
