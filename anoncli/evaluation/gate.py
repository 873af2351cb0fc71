"""The release gate: `--gate "asv.OA.eer>=80,gender.gr>=90,signal.stoi>=0.8"`.

Every condition is `NAME OP NUMBER` with OP one of >=, <=, >, <, ==; NAME is a
dotted path into summary.json (see `figure_names`) or one of the short aliases:
  <label>.<figure>   -> <label>.ignorant.<figure>   (e.g. gender.gr, emotion.acc)
  asv.<figure>       -> asv.OA.<figure>             (ignorant attacker)
  asr.<figure>       -> asr.anonymized.<figure>     (e.g. asr.Aw, asr.WER)
  link.<figure>      -> linkability.<figure>        (e.g. link.cosine_mean, link.G_VD)
A figure that was not measured (NaN) fails its condition.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

from anoncli.errors import AnoncliError

OPERATORS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}
_CONDITION = re.compile(r"^\s*([A-Za-z0-9_.:|\-]+)\s*(>=|<=|==|>|<)\s*([-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)\s*$")


@dataclass
class Condition:
    text: str
    name: str       # as written
    resolved: str   # the summary figure it refers to
    op: str
    threshold: float


def flatten(summary: dict, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of the nested summary as {"asv.OA.eer": 71.2, ...}."""
    flat = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, bool):
            continue
        elif isinstance(value, (int, float)):
            flat[name] = float(value)
    return flat


def figure_names(summary: dict) -> list[str]:
    return sorted(n for n in flatten(summary) if not n.startswith(("meta.", "timings_s.")))


def resolve(name: str, flat: dict[str, float]) -> str | None:
    if name in flat:
        return name
    head, _, rest = name.partition(".")
    candidates = []
    if head == "asv":
        candidates.append(f"asv.OA.{rest}")
    elif head == "asr":
        candidates.append(f"asr.anonymized.{rest}")
    elif head in ("link", "linkability"):
        candidates.append(f"linkability.{rest}")
    else:
        candidates.append(f"{head}.ignorant.{rest}")
    return next((c for c in candidates if c in flat), None)


def parse_gate(text: str, summary: dict, expected: dict | None = None, deferred: tuple[str, ...] = ()) -> list[Condition]:
    """Parse and resolve every condition; an unknown name or a bad condition is a usage error.

    `expected` (a skeleton of the summary the chosen probes will produce) lets
    a name pass that the probes promised but could not measure (e.g. ASR with
    every utterance skipped): it then counts as NaN and fails the gate. Names
    starting with a `deferred` prefix are skipped (checked after the run).
    """
    flat = flatten(summary)
    if expected:
        flat = {**{k: float("nan") for k in flatten(expected)}, **flat}
    conditions, unknown = [], []
    for part in [p for p in text.split(",") if p.strip()]:
        match = _CONDITION.match(part)
        if not match:
            raise AnoncliError(f"--gate {part.strip()!r}: expected NAME OP NUMBER with OP one of >=, <=, >, <, ==")
        name, op, number = match.group(1), match.group(2), float(match.group(3))
        resolved = resolve(name, flat)
        if resolved is None and name.startswith(deferred):
            continue  # figures of a section only known after it ran (feature_probes)
        if resolved is None:
            unknown.append(name)
            continue
        conditions.append(Condition(part.strip(), name, resolved, op, number))
    if unknown:
        raise AnoncliError(f"--gate: unknown figure {', '.join(map(repr, unknown))}; valid names: {', '.join(figure_names(summary))}")
    return conditions


def check_gate(conditions: list[Condition], summary: dict) -> list[tuple[Condition, float]]:
    """The conditions that fail, each with the measured value (NaN when not measured)."""
    flat = flatten(summary)
    failed = []
    for cond in conditions:
        value = flat.get(cond.resolved, float("nan"))
        if math.isnan(value) or not OPERATORS[cond.op](value, cond.threshold):
            failed.append((cond, value))
    return failed


def check_syntax(text: str) -> None:
    """Fail fast on a malformed gate, before minutes of evaluation (names are checked at the end)."""
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise AnoncliError("--gate: no condition given")
    for part in parts:
        if not _CONDITION.match(part):
            raise AnoncliError(f"--gate {part.strip()!r}: expected NAME OP NUMBER with OP one of >=, <=, >, <, ==")


def expected_summary(probes: list[str], attribute_columns: dict[str, int]) -> dict:
    """The figures the given probes produce, as a summary skeleton of NaNs (for early name checks).

    `attribute_columns` maps each attribute probe to its number of classes.
    """
    nan = float("nan")
    skeleton: dict = {}
    if "asv" in probes:
        skeleton["asv"] = {c: dict.fromkeys(("EER", "eer", "minDCF", "threshold", "n_target", "n_nontarget"), nan)
                           for c in ("OO", "OA", "AA")}
    if "signal" in probes:
        skeleton["signal"] = {f"{m}{suffix}": nan for m in ("stoi", "f0_r", "lsd_db", "duration_ratio") for suffix in ("", "_median")}
    if "linkability" in probes:
        skeleton["linkability"] = dict.fromkeys(("cosine_mean", "cosine_median", "D_diag_oo", "D_diag_aa", "G_VD"), nan)
    if "asr" in probes:
        skeleton["asr"] = {"n": nan, **{side: {"WER": nan, "Aw": nan} for side in ("original", "anonymized")}}
    for column, n_classes in attribute_columns.items():
        entry = dict.fromkeys(("acc", "uar", "chance", "norm", "auc"), nan)
        if column in ("gender", "sex") and n_classes == 2:
            entry.update(GR=nan, gr=nan)
        skeleton[column] = {"n": nan, "folds": nan, **{a: dict(entry) for a in ("original", "ignorant", "informed")}}
    return skeleton
