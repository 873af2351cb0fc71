"""Signal probe: how much of the speech signal survives, pair by pair (STOI, F0 r, LSD, duration ratio).

The per-pair scores come from the extraction pass (`anoncli.scoring.signal_metrics`);
this probe summarises them over the corpus with bootstrap intervals over speakers.
"""

from __future__ import annotations

import numpy as np

from anoncli.evaluation.probes import Probe, ProbeContext, ProbeResult, Row, fmt, fmt_ci
from anoncli.scoring import metrics

# The scores of the printed table and of the gate's early name check, with their table labels.
TABLE_SCORES = (
    ("stoi", "STOI"),
    ("f0_r", "F0 Pearson r"),
    ("lsd_db", "log-spectral distance dB"),
    ("duration_ratio", "duration ratio"),
)
PER_PAIR_ONLY = ("stoi_lag_ms",)  # scores.parquet columns without a corpus figure


def signal_summary(
    signal: dict[str, np.ndarray], speakers: np.ndarray, n_boot: int, seed: int, valid: np.ndarray | None = None
) -> dict:
    """Mean, median and bootstrap CI of each signal score over the pairs where it is a number.

    `signal` maps a score name to its (N,) per-pair values, `speakers` (N,) the
    bootstrap groups; `{key}_missing` counts the pairs where the score is NaN,
    those whose audio could not be decoded (not `valid`) included
    (scores.parquet's score_notes column says why).
    """
    summary = {}
    for key, values in signal.items():
        finite = np.isfinite(values) & (valid if valid is not None else True)
        summary[f"{key}_missing"] = int(np.count_nonzero(~finite))
        if not finite.any():
            continue
        summary[key] = float(np.mean(values[finite]))
        summary[f"{key}_median"] = float(np.median(values[finite]))
        ci = metrics.bootstrap_ci(
            lambda ix, v=values, f=finite: float(np.mean(v[ix][f[ix]])) if f[ix].any() else None,
            speakers,
            n_boot=n_boot,
            seed=seed,
        )
        summary[f"{key}_ci"] = list(ci)
    return summary


class SignalProbe(Probe):
    """summary.json `signal`: `{score}`, `{score}_median`, `{score}_ci`, `{score}_missing` per score;
    scores.parquet `signal.{score}`."""

    kind = "signal"
    needs = frozenset({"pairs", "signal"})
    table_rank = 40

    def expected(self) -> dict:
        keys = (*(key for key, _ in TABLE_SCORES), "level_change_db")
        return {f"{key}{suffix}": float("nan") for key in keys for suffix in ("", "_median", "_missing")}

    def run(self, ctx: ProbeContext) -> ProbeResult:
        speakers = np.array([s or "" for s in ctx.speakers])
        scores = {key: values for key, values in ctx.data.signal.items() if key not in PER_PAIR_ONLY}
        summary = signal_summary(scores, speakers, ctx.config.n_boot, ctx.config.seed, ctx.valid)
        return ProbeResult(summary, {f"signal.{key}": values for key, values in ctx.data.signal.items()})

    @classmethod
    def table_rows(cls, key: str, entry: dict) -> list[Row]:
        return [
            (f"signal {label} (mean)", "", fmt(entry[score], 3) + fmt_ci(entry, score, 3), "")
            for score, label in TABLE_SCORES
            if score in entry
        ]
