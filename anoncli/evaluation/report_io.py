"""Reading a finished `anoncli evaluate` report (for `anoncli inspect REPORT`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from anoncli.errors import InputError
from anoncli.evaluation.report import SCORES_NAME, SUMMARY_NAME

# Per-utterance columns where a LOW value is the bad end (utility measures);
# for every other column the worst utterance is the one with the HIGHEST value
# (most linkable, best recognised, largest error).
LOW_IS_WORSE = ("signal.stoi", "signal.f0_r", "asr.original.Aw", "asr.anonymized.Aw")
ALIASES = {
    "asv.link": "link.cosine",
    "link": "link.cosine",
    "linkability": "link.cosine",
    "asv": "asv.OA.score",
    "asv.OA": "asv.OA.score",
    "asv.AA": "asv.AA.score",
    "stoi": "signal.stoi",
    "f0_r": "signal.f0_r",
    "lsd": "signal.lsd_db",
    "wer": "asr.anonymized.wer",
    "asr": "asr.anonymized.wer",
}


def is_report_dir(path: str | Path) -> bool:
    """Whether `path` is a report folder: both summary.json and scores.parquet."""
    path = Path(path)
    return path.is_dir() and (path / SUMMARY_NAME).is_file() and (path / SCORES_NAME).is_file()


def load_summary(path: str | Path) -> dict:
    """A report's summary.json as a dict; raises InputError when unreadable or not JSON."""
    path = Path(path)
    try:
        return json.loads((path / SUMMARY_NAME).read_text(encoding="utf-8"))
    except OSError as err:
        raise InputError(f"{path}: cannot read {SUMMARY_NAME} ({err.strerror or err})") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}/{SUMMARY_NAME}: not valid JSON ({err})") from None


def resolve_column(by: str, columns: list[str]) -> str | None:
    """The scores.parquet column `by` names (itself, an alias, or a label's attacker column); None if there is none."""
    if by in columns:
        return by
    if by in ALIASES and ALIASES[by] in columns:
        return ALIASES[by]
    for candidate in (f"{by}.ignorant.p_true", f"{by}.p_true", f"{by}.score"):
        if candidate in columns:
            return candidate
    return None


def worst_utterances(path: str | Path, n: int = 10, by: str = "asv.link") -> list[dict]:
    """The `n` utterances at the bad end of `by` (least private, or least useful for utility columns).

    `by` is a per-utterance column of scores.parquet (e.g. link.cosine,
    asv.OA.score, gender.ignorant.p_true, signal.stoi) or an alias: asv.link,
    asv, stoi, wer, or a label name (= its ignorant attacker's true-class posterior).
    """
    import pandas as pd

    path = Path(path)
    if not is_report_dir(path):
        raise InputError(f"{path}: not an anoncli evaluate report (no {SUMMARY_NAME} and {SCORES_NAME})")
    frame = pd.read_parquet(path / SCORES_NAME)
    numeric = [c for c in frame.columns if "." in c and pd.api.types.is_float_dtype(frame[c])]
    column = resolve_column(by, numeric)
    if column is None:
        raise InputError(
            f"--by {by!r}: no such per-utterance score in {path} (choose from: {', '.join(sorted(numeric))}, or asv.link)"
        )
    ascending = column in LOW_IS_WORSE
    picked = frame[frame[column].notna()].sort_values(column, ascending=ascending, kind="mergesort").head(int(n))
    keep = [c for c in ("utt_id", "source_path", "speaker") if c in frame.columns]
    rows = []
    for _, row in picked.iterrows():
        entry = {c: row[c] for c in keep}
        entry["by"] = column
        entry["value"] = float(row[column])
        for extra in ("link.cosine", "asv.OA.score", "signal.stoi"):
            if extra in frame.columns and extra != column and not math.isnan(float(row[extra])):
                entry[extra] = float(row[extra])
        rows.append(entry)
    return rows
