"""The probes `anoncli evaluate` runs: plugins behind one small interface, listed in PROBES.

A probe is a `Probe` subclass in its own module. It says

* when it applies: `available(ctx)` returns the probe instances this corpus
  allows (the attribute probe makes one per label column, named after it) and
  a note for each one it cannot run;
* what it needs from the one extraction pass over the audio pairs (`needs`):
  "pairs" (decoded original/anonymized pairs at all), "embeddings" (speaker
  embeddings of both sides), "attacker_features" (the attribute attackers'
  feature vectors) and "signal" (STOI, F0 r, LSD, duration ratio per pair);
  a probe without "pairs" runs even when the output holds no audio;
* which figures it will write (`expected()`, a skeleton of NaNs), so a
  `--gate` name is checked before minutes of work; a probe whose figure names
  are only known after it ran sets `deferred_figures`;
* and then `run(ctx)` returns a `ProbeResult`: its section of summary.json
  (under the instance's name), per-utterance columns for scores.parquet,
  notes, trials, plot inputs and extra tables.

Its class also renders its summary section as rows of the printed and HTML
table (`owns` + `table_rows`, in `table_rank` order) and may add short gate
names (`gate_aliases`). Adding a probe is one module plus one line in PROBES;
`docs/evaluation.md` ("Adding a probe") walks through it.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

# name -> "module:Class", in the order the probes run (their sections appear in
# summary.json in this order). A new probe is one module and one line here.
PROBES: dict[str, str] = {
    "features": "anoncli.evaluation.feature_probes:FeatureProbe",
    "vad": "anoncli.evaluation.vad:VadProbe",
    "signal": "anoncli.evaluation.signal_probe:SignalProbe",
    "linkability": "anoncli.evaluation.linkability:LinkabilityProbe",
    "asv": "anoncli.evaluation.asv:AsvProbe",
    "attribute": "anoncli.evaluation.attribute:AttributeProbe",
    "asr": "anoncli.evaluation.asr:AsrProbe",
}

Row = tuple[str, str, str, str]  # (figure, original / OO, ignorant / OA, informed / AA)


@dataclass
class AttackerData:
    """Utterances of other speakers that the attribute attackers also learn from (`evaluate --attacker-data`).

    `x_original` / `x_anonymized`: (M, F) attacker features of the M utterances
    (the layout of `anoncli.scoring.features.attribute_features`); `speakers`
    and `label_rows` per utterance; none of the speakers is an evaluated one.
    """

    original: str
    anonymized: str
    speakers: list[str]
    label_rows: list[dict]
    x_original: np.ndarray
    x_anonymized: np.ndarray
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        """summary.json meta.attacker_data: the folders, utterance and speaker counts."""
        return {
            "original": self.original,
            "anonymized": self.anonymized,
            "n": len(self.speakers),
            "speakers": len(set(self.speakers)),
        }


@dataclass
class ProbeContext:
    """What a probe may read: the run's settings, the corpus, the pairs and (once run) the extraction."""

    config: Any  # EvaluateConfig: seed, n_boot, trials, asr_model, progress, ...
    corpus: Any  # anoncli.corpus.Corpus of the original files
    pairing: Any  # evaluation.pairing.Pairing: (utterance, anonymized path) pairs, manifest
    utts: list  # the paired utterances, in pair order
    speakers: list[str | None]  # speaker label per pair
    label_rows: list[dict]  # labels per pair
    data: Any = None  # evaluation.extraction.Extracted, set after the extraction pass
    backend_name: str = ""  # the speaker-embedding backend that made data's embeddings
    executor: Any = None  # a concurrent.futures-style pool when --jobs > 1 (or Dask), else None
    attacker: AttackerData | None = None  # --attacker-data: more speakers for the attribute attackers to learn from

    @property
    def utt_ids(self) -> list[str]:
        """Utterance ids of the pairs, in pair order."""
        return [u.utt_id for u in self.utts]

    @property
    def valid(self) -> np.ndarray:
        """(N,) bool: both files of the pair decoded."""
        return self.data.ok

    def labels(self, column: str) -> list:
        """The values of label `column` per pair (None where missing)."""
        return [row.get(column) for row in self.label_rows]


@dataclass
class ProbeResult:
    """A probe's contribution to the report."""

    summary: dict | None = None  # summary.json[probe.name]; None writes no section
    columns: dict[str, Any] = field(default_factory=dict)  # per-utterance columns of scores.parquet
    notes: list[str] = field(default_factory=list)
    trials: dict | None = None  # columns of trials.parquet (the ASV probe)
    plots: dict[str, Any] = field(default_factory=dict)  # inputs of report.make_plots, merged by kind:
    # "trial_scores" {condition: (target, nontarget)}, "per_speaker" {condition: {speaker: EER}},
    # "confusions" {column: {attacker: matrix}}, "roc_inputs" {column: {attacker: (is_positive, score)}}
    tables: dict[str, list[dict]] = field(default_factory=dict)  # extra Parquet files: name -> rows
    # how the probe's attackers were built (summary.json meta.attackers[name], the top of report.html):
    # "family", "trained_on", "text" (one line) and "attackers" {attacker or condition: what it learned from and was tested on}
    protocol: dict | None = None


class Probe:
    """One probe instance; subclasses set the class attributes and implement `available` and `run`."""

    kind: ClassVar[str]  # its name in PROBES
    needs: ClassVar[frozenset[str]] = frozenset({"pairs"})
    table_rank: ClassVar[int] = 100  # position of its rows in the table (low first)
    gate_aliases: ClassVar[dict[str, str]] = {}  # gate name head -> summary prefix; "*": any other head
    deferred_figures: ClassVar[bool] = False  # figure names only known after the run

    def __init__(self, name: str | None = None):
        self.name = name or self.kind

    @classmethod
    def available(cls, ctx: ProbeContext) -> tuple[list[Probe], list[str]]:
        """The instances this corpus allows, and a note for each that cannot run."""
        return [cls()], []

    def expected(self) -> dict:
        """The figures `run` writes, as a summary section of NaNs (for early gate checks)."""
        return {}

    def run(self, ctx: ProbeContext) -> ProbeResult:
        """The probe's result for this context; called after the extraction pass its `needs` asked for."""
        raise NotImplementedError

    @property
    def timing_name(self) -> str:
        """Its key in summary.json's timings_s."""
        return self.name

    @classmethod
    def owns(cls, key: str, entry: Any) -> bool:
        """Whether the summary section `key` was written by this kind of probe."""
        return key == cls.kind

    @classmethod
    def table_rows(cls, key: str, entry: dict) -> list[Row]:
        """Rows of the printed and HTML table for one summary section."""
        return []


def probe_classes() -> list[type[Probe]]:
    """Every registered probe class, in run order."""
    classes = []
    for spec in PROBES.values():
        module_name, class_name = spec.split(":")
        classes.append(getattr(importlib.import_module(module_name), class_name))
    return classes


def gate_aliases() -> dict[str, str]:
    """Short gate names of every probe: {"asv": "asv.OA", "link": "linkability", "*": "{head}.ignorant", ...}."""
    aliases: dict[str, str] = {}
    for cls in probe_classes():
        aliases.update(cls.gate_aliases)
    return aliases


def table_rows(summary: dict) -> list[Row]:
    """The table of a summary: each probe kind's rows for the sections it owns, in `table_rank` order."""
    rows: list[Row] = []
    for cls in sorted(probe_classes(), key=lambda c: c.table_rank):
        for key, entry in summary.items():
            if isinstance(entry, dict) and entry and cls.owns(key, entry):
                rows.extend(cls.table_rows(key, entry))
    return rows


# ---------------------------------------------------------------- number formatting for table rows


def fmt(value, digits: int = 2) -> str:
    """A figure with `digits` decimals; "–" for a missing or non-finite one."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def fmt_ci(entry: dict, key: str, digits: int = 1) -> str:
    """ " [low, high]" from entry[f"{key}_ci"], or "" when there is no finite interval."""
    ci = entry.get(f"{key}_ci")
    if not ci or any(v is None or not math.isfinite(v) for v in ci):
        return ""
    return f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
