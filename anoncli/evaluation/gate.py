"""The release gate: `--gate "asv.OA.eer>=80,gender.gr>=90,signal.stoi>=0.8"`.

Every condition is `NAME OP NUMBER` with OP one of >=, <=, >, <, ==; NAME is a
dotted path into summary.json (see `figure_names`) or a short alias that a
probe declares (`Probe.gate_aliases`), at present:
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
from collections.abc import Sequence
from dataclasses import dataclass

from anoncli.errors import AnoncliError

OPERATORS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}
_CONDITION = re.compile(r"^\s*([A-Za-z0-9_.:|\-]+)\s*(>=|<=|==|>|<)\s*([-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)\s*$")


@dataclass
class Condition:
    """One parsed gate condition: its text, the figure as written and as resolved, the operator and the threshold."""

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


def parse_gate(text: str, summary: dict, expected: dict | None = None, deferred: tuple[str, ...] = (),
               aliases: dict[str, str] | None = None, skipped: Sequence[str] = ()) -> list[Condition]:
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
        conditions.append(Condition(part.strip(), name, resolved, op, number))
    for name in unknown:
        reason = next((note for note in skipped if note.startswith(f"{name.partition('.')[0]}: ")), None)
        if reason is not None:
            raise AnoncliError(f"--gate: {name!r} cannot be measured on this corpus ({reason})")
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


def gate_record(conditions: list[Condition], failed: list[tuple[Condition, float]], summary: dict,
                protocols: dict[str, dict], passed: bool, unreadable: int = 0, allow_missing: int = 0) -> dict:
    """summary.json meta.gate: whether the gate passed, and per condition its figure, the measured value, whether
    it held and the attacker protocol it was checked under."""
    flat = flatten(summary)
    failing = {id(cond) for cond, _ in failed}
    return {"passed": passed, "unreadable_pairs": unreadable, "allow_missing": allow_missing,
            "conditions": [{"condition": cond.text, "figure": cond.resolved, "measured": flat.get(cond.resolved),
                            "passed": id(cond) not in failing, "protocol": protocol_of(cond.resolved, protocols)}
                           for cond in conditions]}


def check_syntax(text: str) -> None:
    """Fail fast on a malformed gate, before minutes of evaluation (names are checked at the end)."""
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise AnoncliError("--gate: no condition given")
    for part in parts:
        if not _CONDITION.match(part):
            raise AnoncliError(f"--gate {part.strip()!r}: expected NAME OP NUMBER with OP one of >=, <=, >, <, ==")
