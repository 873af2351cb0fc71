"""The release gate: `--gate "asv.OA.eer>=80,gender.gr>=90,signal.stoi>=0.8"`.

Every condition is `NAME OP NUMBER` with OP one of >=, <=, >, <, ==; NAME is a
dotted path into summary.json (see `figure_names`) or a short alias that a
probe declares (`Probe.gate_aliases`), at present:
  <label>.<figure>   -> <label>.ignorant.<figure>   (e.g. gender.gr, emotion.acc)
  asv.<figure>       -> asv.OA.<figure>             (ignorant attacker)
  asr.<figure>       -> asr.anonymized.<figure>     (e.g. asr.Aw, asr.WER)
  link.<figure>      -> linkability.<figure>        (e.g. link.cosine_mean, link.G_VD)
A figure that was not measured (NaN) fails its condition. Names are case-sensitive, and
two figures can differ only by case: `asv.OA.EER` is the equal error rate in % (50 =
chance), `asv.OA.eer` the normalised privacy score 100 − 2·|EER − 50| (100 = chance);
likewise `GR`/`gr`. A threshold outside the range a figure's definition allows (`SCALES`)
is refused before any work, and a failed condition says the figure's scale.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass

from anoncli.errors import AnoncliError

OPERATORS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}
_CONDITION = re.compile(r"^\s*([A-Za-z0-9_.:|\-]+)\s*(>=|<=|==|>|<)\s*([-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)\s*$")


@dataclass
class Condition:
    """One parsed gate condition: its text, the figure as written and as resolved, the operator and the threshold."""

    text: str
    name: str  # as written
    resolved: str  # the summary figure it refers to
    op: str
    threshold: float


@dataclass(frozen=True)
class Scale:
    """What a figure's numbers are (`unit`, shown after a measured value) and the range its definition allows.

    `chance`: for a raw error or accuracy rate in % (EER, GR) the value at chance, above which an attacker is
    worse than guessing (a gate asking for more is warned that the normalised score is probably meant).
    """

    unit: str
    low: float = -math.inf
    high: float = math.inf
    chance: float | None = None


_PERCENT = Scale("%", 0.0, 100.0)
_PRIVACY = Scale("normalised 0-100, 100 = chance", 0.0, 100.0)
_COUNT = Scale("count", 0.0)
_UNIT = Scale("-1 to 1", -1.0, 1.0)
# Leaf names of summary.json figures (docs/evaluation.md, "Metric definitions"); anoncli.scoring.metrics computes them.
SCALES = {
    "EER": Scale("EER in %, 50 = chance", 0.0, 100.0, chance=50.0),
    "eer": Scale("normalised 0-100 = 100 - 2·|EER - 50|, 100 = chance", 0.0, 100.0),
    "GR": Scale("accuracy in %, 50 = chance", 0.0, 100.0, chance=50.0),
    "gr": Scale("normalised 0-100 = 100 - 2·|GR - 50|, 100 = chance", 0.0, 100.0),
    "minDCF": Scale("normalised minDCF, 1 = no better than rejecting every trial", 0.0),
    "acc": _PERCENT,
    "uar": _PERCENT,
    "chance": _PERCENT,
    "norm": _PRIVACY,
    "auc": Scale("ROC AUC 0-1, 0.5 = chance", 0.0, 1.0),
    "WER": Scale("%", 0.0),
    "Aw": Scale("100 - WER, %", high=100.0),
    "stoi": Scale("STOI, at most 1", -1.0, 1.0),
    "f0_r": Scale("Pearson r, -1 to 1", -1.0, 1.0),
    "cosine_mean": _UNIT,
    "cosine_median": _UNIT,
    "lsd_db": Scale("dB", 0.0),
    "level_change_db": Scale("dB"),
    "G_VD": Scale("dB"),
    "duration_ratio": Scale("output/original duration", 0.0),
    "n": _COUNT,
    "n_target": _COUNT,
    "n_nontarget": _COUNT,
    "passthrough": _COUNT,
    "cosine_missing": _COUNT,
    "cosine_from_manifest": _COUNT,
    "folds": _COUNT,
    "speakers": _COUNT,
}


def scale_of(figure: str) -> Scale | None:
    """The `Scale` of a summary figure ("asv.OA.EER", "signal.stoi_median", ...), or None when unknown
    (the `features` section, whose figures follow each method's own labels and units)."""
    leaf = figure.rpartition(".")[2]
    if figure.startswith("features."):
        return None
    if leaf.endswith("_missing"):
        return _COUNT
    return SCALES.get(leaf.removesuffix("_median"))


def case_twin(figure: str, names) -> str | None:
    """The figure of `names` whose name differs from `figure` only by case (asv.OA.eer for asv.OA.EER), or None."""
    return next((n for n in names if n != figure and n.lower() == figure.lower()), None)


def describe_scale(figure: str, names=()) -> str:
    """ " (EER in %, 50 = chance; asv.OA.eer is normalised 0-100 = ..., 100 = chance)": the scale of a figure and
    of its case twin among `names`, for a gate message; "" when neither is known."""
    parts = []
    scale = scale_of(figure)
    if scale is not None:
        parts.append(scale.unit)
    twin = case_twin(figure, names)
    twin_scale = scale_of(twin) if twin else None
    if twin_scale is not None:
        parts.append(f"{twin} is {twin_scale.unit}")
    return f" ({'; '.join(parts)})" if parts else ""


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
    """Gate-able figure names of a summary (its numeric leaves, without meta. and timings_s.), sorted."""
    return sorted(n for n in flatten(summary) if not n.startswith(("meta.", "timings_s.")))


def resolve(name: str, flat: dict[str, float], aliases: dict[str, str]) -> str | None:
    """The summary figure `name` refers to: itself, or through an alias {head: prefix} ("*": any other head)."""
    if name in flat:
        return name
    head, _, rest = name.partition(".")
    prefix = aliases.get(head, aliases.get("*"))
    if prefix is None:
        return None
    candidate = f"{prefix.format(head=head)}.{rest}"
    return candidate if candidate in flat else None


def parse_gate(
    text: str,
    summary: dict,
    expected: dict | None = None,
    deferred: tuple[str, ...] = (),
    aliases: dict[str, str] | None = None,
    skipped: Sequence[str] = (),
) -> list[Condition]:
    """Parse and resolve every condition; an unknown name or a bad condition is a usage error.

    `expected` (a skeleton of the summary the chosen probes will produce) lets
    a name pass that the probes promised but could not measure (e.g. ASR with
    every utterance skipped): it then counts as NaN and fails the gate. Names
    starting with a `deferred` prefix are skipped (checked after the run).
    `aliases` defaults to every registered probe's (`probes.gate_aliases()`).
    `skipped` are the notes of probes that could not run ("gender: not probed
    (why)"): an unknown name whose first part is such a probe is refused with
    that reason instead of the list of valid names.
    """
    if aliases is None:
        from anoncli.evaluation.probes import gate_aliases

        aliases = gate_aliases()
    flat = flatten(summary)
    if expected:
        flat = {**{k: float("nan") for k in flatten(expected)}, **flat}
    conditions, unknown = [], []
    for part in [p for p in text.split(",") if p.strip()]:
        match = _CONDITION.match(part)
        if not match:
            raise AnoncliError(f"--gate {part.strip()!r}: expected NAME OP NUMBER with OP one of >=, <=, >, <, ==")
        name, op, number = match.group(1), match.group(2), float(match.group(3))
        resolved = resolve(name, flat, aliases)
        if resolved is None and name.startswith(deferred):
            continue  # figures of a section only known after it ran (feature_probes)
        if resolved is None:
            unknown.append(name)
            continue
        scale = scale_of(resolved)
        if scale is not None and not scale.low <= number <= scale.high:
            bounds = (
                f"{scale.low:g} to {scale.high:g}"
                if math.isfinite(scale.low) and math.isfinite(scale.high)
                else (f"at least {scale.low:g}" if math.isfinite(scale.low) else f"at most {scale.high:g}")
            )
            raise AnoncliError(
                f"--gate {part.strip()!r}: {number:g} is outside the range of {resolved}, "
                f"{bounds}{describe_scale(resolved, flat)}"
            )
        conditions.append(Condition(part.strip(), name, resolved, op, number))
    for name in unknown:
        reason = next((note for note in skipped if note.startswith(f"{name.partition('.')[0]}: ")), None)
        if reason is not None:
            raise AnoncliError(f"--gate: {name!r} cannot be measured on this corpus ({reason})")
    if unknown:
        raise AnoncliError(
            f"--gate: unknown figure {', '.join(map(repr, unknown))}; valid names: {', '.join(figure_names(summary))}"
        )
    return conditions


def beyond_chance(conditions: list[Condition], names) -> list[str]:
    """Warnings for conditions that ask a raw rate in % (EER, GR) for more than its chance value, which only an
    attacker worse than guessing reaches: most likely the normalised figure (eer, gr) was meant."""
    lines = []
    for cond in conditions:
        scale = scale_of(cond.resolved)
        if scale is None or scale.chance is None or cond.op not in (">=", ">") or cond.threshold <= scale.chance:
            continue
        lines.append(
            f"--gate {cond.text!r}: {cond.resolved} above {scale.chance:g} means an attacker worse than "
            f"chance{describe_scale(cond.resolved, names)}"
        )
    return lines


GATE_DIGITS = 9  # significant digits a measured figure is compared at (far above any reported precision)


def check_gate(conditions: list[Condition], summary: dict) -> list[tuple[Condition, float]]:
    """The conditions that fail, each with the measured value (NaN when not measured).

    The value is compared at `GATE_DIGITS` significant digits, as it is printed: a normalised
    score of 89.99999999999999 (floating-point noise of 100 - 2·|x - 50|) meets `>=90`.
    """
    flat = flatten(summary)
    failed = []
    for cond in conditions:
        value = flat.get(cond.resolved, float("nan"))
        if math.isnan(value) or not OPERATORS[cond.op](float(f"{value:.{GATE_DIGITS}g}"), cond.threshold):
            failed.append((cond, value))
    return failed


def missing_reason(figure: str, summary: dict) -> str | None:
    """Why a figure is not measured, where its section says so (`<figure>_note`, e.g. linkability.G_VD_note)."""
    entry = summary
    *path, name = figure.split(".")
    for key in path:
        entry = entry.get(key) if isinstance(entry, dict) else None
    note = entry.get(f"{name}_note") if isinstance(entry, dict) else None
    return note if isinstance(note, str) else None


def protocol_of(figure: str, protocols: dict[str, dict]) -> str | None:
    """The attacker protocol a figure was measured under ("ignorant attacker: trained on original audio, ...;
    model family; training data"), from summary.json meta.attackers; None for a figure of no attacker."""
    head, _, rest = figure.partition(".")
    protocol = protocols.get(head)
    if protocol is None:
        return None
    role = rest.partition(".")[0]
    what = protocol.get("attackers", {}).get(role)
    who = f"{head} {role} attacker: {what}; " if what else f"{head} attackers: "
    return f"{who}{protocol['family']}; {protocol['training']}"


def gate_record(
    conditions: list[Condition],
    failed: list[tuple[Condition, float]],
    summary: dict,
    protocols: dict[str, dict],
    passed: bool,
    unreadable: int = 0,
    allow_missing: int = 0,
) -> dict:
    """summary.json meta.gate: whether the gate passed, and per condition its figure, the measured value, whether
    it held and the attacker protocol it was checked under."""
    flat = flatten(summary)
    failing = {id(cond) for cond, _ in failed}
    return {
        "passed": passed,
        "unreadable_pairs": unreadable,
        "allow_missing": allow_missing,
        "conditions": [
            {
                "condition": cond.text,
                "figure": cond.resolved,
                "measured": flat.get(cond.resolved),
                "passed": id(cond) not in failing,
                "protocol": protocol_of(cond.resolved, protocols),
            }
            for cond in conditions
        ],
    }


def check_syntax(text: str) -> None:
    """Fail fast on a malformed gate, before minutes of evaluation (names are checked at the end)."""
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise AnoncliError("--gate: no condition given")
    for part in parts:
        if not _CONDITION.match(part):
            raise AnoncliError(f"--gate {part.strip()!r}: expected NAME OP NUMBER with OP one of >=, <=, >, <, ==")
