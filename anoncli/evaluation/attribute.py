"""Attribute attackers: can a classifier recover a label (gender, emotion, speaker …) from the audio?

For each categorical label column, a multinomial logistic-regression head on
the per-utterance feature vectors of `features.py` is trained with
cross-validation folds that are speaker-disjoint (for `speaker` itself: folds
within speakers, i.e. closed-set speaker identification). Every utterance is
predicted once, by the fold that did not train on it. Three attackers share
the folds:
  original   trained on original, tested on original (is the label learnable at all?)
  ignorant   trained on original, tested on anonymized
  informed   trained on anonymized, tested on anonymized
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anoncli.atomic import atomic_path, atomic_write_json
from anoncli.errors import AnoncliError, InputError
from anoncli.evaluation.probes import Probe, ProbeContext, ProbeResult, Row, fmt, fmt_ci
from anoncli.scoring import metrics
from anoncli.scoring.probe import make_folds
from anoncli.seeding import derive_seed

ATTACKERS = ("original", "ignorant", "informed")
MAX_CLASSES = 50
MAX_FOLDS = 5
L2_C = 0.1  # inverse regularisation strength (sklearn's C), chosen on emodb-dev
TEXT_COLUMNS = {"transcript", "text", "sentence", "words", "label_utt_id", "utt_id", "file_name", "path"}
BINARY_NAMES = {"gender", "sex"}  # binary attributes reported as GR / gr as in GenGAN


@dataclass
class ProbeSpec:
    """One label column to attack: its name, the classes kept, and a note on what was dropped."""

    column: str
    classes: list[str]
    note: str = ""


def candidate_columns(
    label_rows: list[dict], speakers: list[str | None], columns: list[str]
) -> tuple[list[ProbeSpec], list[str]]:
    """Label columns that can be probed, and a note for each one that cannot.

    A column qualifies with 2..MAX_CLASSES classes; for columns other than
    `speaker`, only classes spoken by ≥ 2 speakers are kept (a class with one
    speaker cannot be tested on unseen speakers) and ≥ 2 such classes must remain.
    A column of measurements (every value a number, some with a fraction, such
    as a `duration_s` column of the metadata) is not a class label and is left
    out with a note; integer codes (`01`, `02`) stay categorical.
    """
    specs, notes = [], []
    for column in columns:
        if column in TEXT_COLUMNS:
            continue
        values = [row.get(column) for row in label_rows]
        present = sorted({v for v in values if v is not None})
        measured = _measurement_range(present)
        if measured is not None:
            notes.append(f"{column}: numeric measurements ({measured[0]:g}–{measured[1]:g}), not a categorical label")
            continue
        if column == "speaker":
            counts = {v: values.count(v) for v in present}
            kept = [v for v in present if counts[v] >= 2]
        else:
            speakers_of: dict[str, set] = {}
            for v, s in zip(values, speakers):
                if v is not None and s is not None:
                    speakers_of.setdefault(v, set()).add(s)
            kept = [v for v in present if len(speakers_of.get(v, ())) >= 2]
        if len(present) > MAX_CLASSES and column == "speaker":
            notes.append(
                f"speaker: {len(present)} speakers; closed-set speaker ID is probed up to {MAX_CLASSES} (see the asv probe)"
            )
        elif len(present) > MAX_CLASSES:
            notes.append(f"{column}: {len(present)} distinct values, not a categorical label (max {MAX_CLASSES})")
        elif len(kept) < 2:
            reason = "one class" if len(present) < 2 else "fewer than 2 classes spoken by 2 or more speakers"
            notes.append(f"{column}: not probed ({reason})")
        else:
            dropped = len(present) - len(kept)
            note = f"{dropped} classes with a single speaker left out" if dropped else ""
            specs.append(ProbeSpec(column, kept, note))
    return specs, notes


def _measurement_range(values: list[str]) -> tuple[float, float] | None:
    """(min, max) when every value is a finite number and at least one has a fractional part, else None."""
    numbers, fractional = [], False
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        if not np.isfinite(number):
            return None
        numbers.append(number)
        fractional = fractional or not number.is_integer()
    return (min(numbers), max(numbers)) if numbers and fractional else None


# ---------------------------------------------------------------- the classifier


class LogisticHead:
    """Standardisation + multinomial logistic regression (L2, L-BFGS), applied as a torch module.

    Deliberately small: it learns in well under a second per fold on a CPU,
    and a linear head on good features is a strong, stable attacker.
    """

    def __init__(self, n_features: int, n_classes: int, c: float = L2_C):
        import torch

        self.linear = torch.nn.Linear(n_features, n_classes)
        self.mean = torch.zeros(n_features)
        self.scale = torch.ones(n_features)
        self.c = c

    def fit(self, x: np.ndarray, y: np.ndarray, seed: int = 0, max_iter: int = 500) -> LogisticHead:
        """Fit with scikit-learn's L-BFGS solver (fast in numpy), then hold the weights as torch tensors."""
        import warnings

        import torch
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.int64)
        mean = x.mean(0)
        scale = np.maximum(x.std(0), 1e-6)
        model = LogisticRegression(C=self.c, max_iter=max_iter, random_state=seed % (2**31))
        from threadpoolctl import threadpool_limits

        # Single-threaded BLAS: these matrices are tiny, and spare threads only contend on a shared CPU.
        with warnings.catch_warnings(), threadpool_limits(limits=1):
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit((x - mean) / scale, y)
        n_classes = self.linear.out_features
        weight = np.zeros((n_classes, x.shape[1]))
        bias = np.full(n_classes, -1e4)  # classes absent from this training fold are never predicted
        present = model.classes_
        if len(present) == 2:  # sklearn keeps one weight vector for two classes: logit of classes_[1]
            weight[present[1]], bias[present[1]] = model.coef_[0] / 2, model.intercept_[0] / 2
            weight[present[0]], bias[present[0]] = -model.coef_[0] / 2, -model.intercept_[0] / 2
        else:
            weight[present], bias[present] = model.coef_, model.intercept_
        with torch.no_grad():
            self.linear.weight.copy_(torch.from_numpy(weight).float())
            self.linear.bias.copy_(torch.from_numpy(bias).float())
        self.mean = torch.from_numpy(mean).float()
        self.scale = torch.from_numpy(scale).float()
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class posteriors (N, n_classes) for features (N, n_features)."""
        import torch

        with torch.no_grad():
            z = (torch.from_numpy(np.asarray(x, dtype=np.float32)) - self.mean) / self.scale
            return torch.softmax(self.linear(z), dim=1).numpy()

    def state_dict(self) -> dict:
        """Weights, bias, feature mean and scale as tensors (what `save_attacker` stores)."""
        return {
            "weight": self.linear.weight.detach().clone(),
            "bias": self.linear.bias.detach().clone(),
            "mean": self.mean.clone(),
            "scale": self.scale.clone(),
        }

    @classmethod
    def from_state_dict(cls, state: dict, c: float = L2_C) -> LogisticHead:
        """A head rebuilt from `state_dict()` output."""
        import torch

        n_classes, n_features = state["weight"].shape
        head = cls(n_features, n_classes, c)
        with torch.no_grad():
            head.linear.weight.copy_(state["weight"])
            head.linear.bias.copy_(state["bias"])
        head.mean, head.scale = state["mean"], state["scale"]
        return head


# ---------------------------------------------------------------- the probe


def run_attribute(
    spec: ProbeSpec,
    labels: list[str | None],
    speakers: list[str | None],
    x_original: np.ndarray,
    x_anonymized: np.ndarray,
    valid: np.ndarray,
    seed: int = 0,
    n_boot: int = 200,
    attackers=ATTACKERS,
    extra: tuple[list, np.ndarray, np.ndarray] | None = None,
):
    """Cross-validated attackers for one label column; returns (summary, per-utterance columns, confusions).

    `extra` = (labels, (M, F) original features, (M, F) anonymized features)
    of utterances of other speakers (`evaluate --attacker-data`): every fold's
    attackers also train on those whose label is one of `spec.classes`
    (original and ignorant on the original side, informed on the anonymized
    side); the tested utterances stay these. Not used for `speaker` itself.
    """
    class_index = {c: i for i, c in enumerate(spec.classes)}
    if extra is not None and spec.column != "speaker":
        keep = np.array([label in class_index for label in extra[0]], dtype=bool)
        extra_y = np.array([class_index[label] for label, k in zip(extra[0], keep) if k], dtype=int)
        extra_o, extra_a = np.asarray(extra[1])[keep], np.asarray(extra[2])[keep]
    else:
        extra_y, extra_o, extra_a = np.zeros(0, dtype=int), None, None
    rows = np.array([valid[i] and labels[i] in class_index and speakers[i] is not None for i in range(len(labels))])
    idx = np.flatnonzero(rows)
    n = len(labels)
    y = np.array([class_index[labels[i]] for i in idx])
    spk = np.array([speakers[i] for i in idx])
    is_speaker = spec.column == "speaker"
    # speaker-disjoint folds; for `speaker` itself, folds within speakers (closed-set speaker ID)
    folds = make_folds(y, None if is_speaker else spk, MAX_FOLDS, seed=derive_seed(seed, f"folds:{spec.column}"))
    k = len(spec.classes)
    probs = {a: np.full((len(idx), k), np.nan) for a in attackers}
    for fold, held_out in enumerate(folds):
        test = np.zeros(len(idx), dtype=bool)
        test[held_out] = True
        train = ~test
        if len(np.unique(y[train])) < 2:
            continue
        fold_seed = derive_seed(seed, f"{spec.column}:{fold}")
        heads = {}
        y_fit = np.concatenate([y[train], extra_y])
        if "original" in attackers or "ignorant" in attackers:
            x_fit = x_original[idx][train] if extra_o is None else np.concatenate([x_original[idx][train], extra_o])
            heads["O"] = LogisticHead(x_original.shape[1], k).fit(x_fit, y_fit, fold_seed)
        if "informed" in attackers:
            x_fit = x_anonymized[idx][train] if extra_a is None else np.concatenate([x_anonymized[idx][train], extra_a])
            heads["A"] = LogisticHead(x_anonymized.shape[1], k).fit(x_fit, y_fit, fold_seed)
        if "original" in attackers:
            probs["original"][test] = heads["O"].predict_proba(x_original[idx][test])
        if "ignorant" in attackers:
            probs["ignorant"][test] = heads["O"].predict_proba(x_anonymized[idx][test])
        if "informed" in attackers:
            probs["informed"][test] = heads["A"].predict_proba(x_anonymized[idx][test])

    summary, per_utt, confusions = (
        {
            "classes": spec.classes,
            "n": int(len(idx)),
            "split": "within-speaker folds" if is_speaker else "speaker-disjoint folds",
            "folds": len(folds),
        },
        {},
        {},
    )
    if spec.note:
        summary["note"] = spec.note
    summary["speakers"] = len(set(spk.tolist()))
    if extra_y.size:
        summary["extra_training"] = int(extra_y.size)  # utterances of other speakers each fold also learned from
    for attacker in attackers:
        p = probs[attacker]
        scored = ~np.isnan(p).any(axis=1)
        pred = np.where(scored, np.nan_to_num(p).argmax(axis=1), -1)
        acc = metrics.accuracy(y[scored], pred[scored])
        chance = _chance(y, scored)
        entry = {
            "acc": acc,
            "uar": metrics.uar(y[scored], pred[scored]),
            "chance": chance,
            "norm": metrics.normalised_accuracy(acc, chance),
            "auc": metrics.roc_auc(y[scored], p[scored], k) if scored.sum() else float("nan"),
        }
        entry["acc_ci"] = list(
            metrics.bootstrap_ci(
                lambda ix, y=y, pred=pred, scored=scored: metrics.accuracy(y[ix][scored[ix]], pred[ix][scored[ix]]),
                spk,
                n_boot=n_boot,
                seed=seed,
            )
        )
        if spec.column in BINARY_NAMES and k == 2:
            # GenGAN's formula with its fixed 50 %, so figures compare with the paper's table.
            entry["GR"], entry["gr"] = acc, metrics.normalised_accuracy(acc, 50.0)
        summary[attacker] = entry
        true_post = np.full(n, np.nan)
        predicted = np.full(n, None, dtype=object)
        true_post[idx[scored]] = p[scored, y[scored]]
        predicted[idx[scored]] = [spec.classes[c] for c in pred[scored]]
        per_utt[f"{spec.column}.{attacker}.p_true"] = true_post
        per_utt[f"{spec.column}.{attacker}.pred"] = predicted
        confusion = np.zeros((k, k), dtype=int)
        for t, q in zip(y[scored], pred[scored]):
            confusion[t, q] += 1
        confusions[attacker] = confusion
    return summary, per_utt, confusions


LEARNABLE_MARGIN = 5.0  # points of accuracy above chance that the original-audio attacker must reach


def learnability_note(column: str, entry: dict) -> str | None:
    """Why the probe's privacy figures say nothing, or None: the attacker trained and tested on original audio
    (`entry["original"]`) does not learn the label, i.e. its accuracy is within LEARNABLE_MARGIN points of chance
    or the lower end of its bootstrap CI (acc_ci) is at or below chance. Then every gr/normalised accuracy reads
    "private" even for unchanged audio (OO/OA/AA protocol, Tomashenko et al. 2022)."""
    original = entry.get("original") or {}
    acc, chance = original.get("acc"), original.get("chance")
    if acc is None or chance is None or not np.isfinite(acc) or not np.isfinite(chance):
        return None
    low = (original.get("acc_ci") or [float("nan")])[0]
    if acc - chance >= LEARNABLE_MARGIN and not (low is not None and np.isfinite(low) and low <= chance):
        return None
    return (
        f"{column}: the attacker does not learn the label on original audio ({acc:.0f} % against chance "
        f"{chance:.0f} %): its privacy figures say nothing about the method; use more speakers or --attacker-data"
    )


def _chance(y: np.ndarray, scored: np.ndarray) -> float:
    """Chance level (%): the share of the most frequent class among the tested utterances.

    That is the best accuracy any constant guess reaches on this test set
    (1/K for balanced classes). The training-fold majority is not used: with
    speaker-disjoint folds it can be the wrong class of a fold by construction.
    """
    tested = y[scored]
    if tested.size == 0:
        return float("nan")
    return 100.0 * float(np.bincount(tested).max()) / tested.size


ROLES = {
    "original": "trained on original audio, tested on original audio (is the label learnable at all?)",
    "ignorant": "trained on original audio, tested on anonymized audio",
    "informed": "trained on anonymized audio, tested on anonymized audio",
}


def attacker_protocol(column: str, summary: dict, n_features: int, attacker=None) -> dict:
    """How the attackers of one label column were built: model family, training data, audio per attacker.

    `summary`: the column's `run_attribute` summary (n, speakers, folds, split,
    extra_training); `attacker`: the run's `AttackerData` (--attacker-data) or None.
    """
    family = (
        f"multinomial logistic regression (L2, C = {L2_C}) on {n_features} features per utterance "
        "(resemblyzer speaker embedding, log-mel and prosody statistics)"
    )
    evaluated = {
        "utterances": summary["n"],
        "speakers": summary.get("speakers"),
        "folds": summary["folds"],
        "split": summary["split"],
    }
    split = "split within speakers: closed-set speaker identification" if column == "speaker" else "speaker-disjoint"
    trained = (
        f"each fold on the other folds of the evaluated set ({summary['n']} utterances, "
        f"{summary.get('speakers')} speakers, {summary['folds']} folds, {split})"
    )
    extra = None
    if attacker is None:
        trained += ", and on no other corpus (no --attacker-data)"
    elif column == "speaker":
        trained += "; --attacker-data is not used for speaker identification"
    else:
        used = (
            [s for s, row in zip(attacker.speakers, attacker.label_rows) if row.get(column) in summary["classes"]]
            if summary.get("extra_training")
            else []
        )
        extra = {
            "original": attacker.original,
            "anonymized": attacker.anonymized,
            "utterances": int(summary.get("extra_training", 0)),
            "speakers": len(set(used)),
        }
        trained += (
            f", plus {extra['utterances']} utterances of {extra['speakers']} other speakers of "
            f"--attacker-data {attacker.original} (its anonymized copy {attacker.anonymized} "
            "for the informed attacker)"
        )
    roles = dict(ROLES)
    return {
        "family": family,
        "trained_on": {"evaluated": evaluated, "extra": extra},
        "training": f"trained {trained}",
        "attackers": roles,
        "text": f"{column} attackers: {family}; trained {trained}; "
        f"ignorant: {roles['ignorant']}; informed: {roles['informed']}",
    }


def binary_roc_inputs(classes: list[str], labels: list[str | None], columns: dict) -> dict:
    """Per attacker: (is the second class, posterior of the second class) over the scored utterances."""
    positive = np.array([label == classes[1] for label in labels])
    result = {}
    for attacker in ATTACKERS:
        key = next((k for k in columns if k.endswith(f".{attacker}.p_true")), None)
        if key is None:
            continue
        p_true = np.asarray(columns[key], dtype=float)
        scored = np.isfinite(p_true)
        score = np.where(positive, p_true, 1.0 - p_true)
        result[attacker] = (positive[scored], score[scored])
    return result


class AttributeProbe(Probe):
    """One probe per categorical label column (gender, emotion, speaker, ...), named after the column.

    summary.json `<column>`: classes, n, split, folds, and per attacker (original, ignorant,
    informed) acc, uar, chance, norm, auc, acc_ci (binary gender also GR, gr); scores.parquet
    `<column>.<attacker>.p_true` and `.pred`. Gate alias: `<column>.<figure>` is the ignorant
    attacker's `<column>.ignorant.<figure>`.
    """

    kind = "attribute"
    needs = frozenset({"pairs", "embeddings", "attacker_features", "signal"})
    table_rank = 20
    gate_aliases = {"*": "{head}.ignorant"}

    def __init__(self, spec: ProbeSpec):
        super().__init__(spec.column)
        self.spec = spec

    @classmethod
    def available(cls, ctx: ProbeContext) -> tuple[list[Probe], list[str]]:
        specs, notes = candidate_columns(ctx.label_rows, ctx.speakers, ctx.corpus.label_columns)
        return [cls(spec) for spec in specs], notes

    @property
    def timing_name(self) -> str:
        return f"attribute.{self.name}"

    def expected(self) -> dict:
        nan = float("nan")
        entry = dict.fromkeys(("acc", "uar", "chance", "norm", "auc"), nan)
        if self.name in BINARY_NAMES and len(self.spec.classes) == 2:
            entry.update(GR=nan, gr=nan)
        return {"n": nan, "folds": nan, **{a: dict(entry) for a in ATTACKERS}}

    def run(self, ctx: ProbeContext) -> ProbeResult:
        labels = ctx.labels(self.name)
        extra = None
        if ctx.attacker is not None:
            extra = (
                [row.get(self.name) for row in ctx.attacker.label_rows],
                ctx.attacker.x_original,
                ctx.attacker.x_anonymized,
            )
        summary, columns, confusion = run_attribute(
            self.spec,
            labels,
            ctx.speakers,
            ctx.data.original.features,
            ctx.data.anonymized.features,
            ctx.valid,
            seed=ctx.config.seed,
            n_boot=ctx.config.n_boot,
            extra=extra,
        )
        plots = {"confusions": {self.name: confusion}}
        if len(self.spec.classes) == 2:
            plots["roc_inputs"] = {self.name: binary_roc_inputs(self.spec.classes, labels, columns)}
        protocol = attacker_protocol(self.name, summary, ctx.data.original.features.shape[1], ctx.attacker)
        unlearnable = learnability_note(self.name, summary)
        summary["learnable"] = unlearnable is None
        notes = [unlearnable] if unlearnable else []
        return ProbeResult(summary, columns, notes=notes, plots=plots, protocol=protocol)

    @classmethod
    def owns(cls, key: str, entry) -> bool:
        return "ignorant" in entry

    @classmethod
    def table_rows(cls, key: str, entry: dict) -> list[Row]:
        k = len(entry.get("classes", []))
        chance = entry["original"].get("chance")
        label = "gr" if "gr" in entry["ignorant"] else "normalised"
        return [
            (
                f"{key} accuracy % ({k} classes, chance {fmt(chance, 1)})",
                *(fmt(entry[a].get("acc"), 1) + fmt_ci(entry[a], "acc") for a in ATTACKERS),
            ),
            (f"{key} UAR %", *(fmt(entry[a].get("uar"), 1) for a in ATTACKERS)),
            (f"{key} {label} (100 = private)", *(fmt(entry[a].get("gr", entry[a].get("norm")), 1) for a in ATTACKERS)),
            (f"{key} ROC AUC", *(fmt(entry[a].get("auc"), 3) for a in ATTACKERS)),
        ]


# ---------------------------------------------------------------- `anoncli train --method attribute`

MODEL_KIND = "anoncli-attribute-attacker"


def save_attacker(out: Path, head: LogisticHead, config: dict) -> None:
    """Write `out/model.pt` (the head's state dict) and `out/model.json` (`config`), each atomically."""
    import torch

    with atomic_path(out / "model.pt") as tmp:
        torch.save(head.state_dict(), tmp)
    atomic_write_json(out / "model.json", config)


def load_attacker(folder: Path) -> tuple[LogisticHead, dict]:
    """The head and config of an `anoncli train --method attribute` run folder (weights loaded with weights_only=True).

    Raises InputError when model.json is missing or of another kind.
    """
    import torch

    folder = Path(folder)
    config_path = folder / "model.json"
    if not config_path.is_file():
        raise InputError(f"{folder}: no model.json (not an `anoncli train --method attribute` run)")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("kind") != MODEL_KIND:
        raise InputError(f"{folder}: model.json is not an attribute attacker (kind {config.get('kind')!r})")
    state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
    return LogisticHead.from_state_dict(state, config.get("c", L2_C)), config


def train_attribute(options) -> dict:
    """Train one attacker for `--label COL` on a whole corpus and save it (model.pt + model.json).

    Also reports its cross-validated accuracy on that corpus (the same folds
    `evaluate` uses), so the saved model comes with an honest figure.
    """
    import time

    import torch

    from anoncli.evaluation.extraction import extract
    from anoncli.scoring.embeddings import ResemblyzerBackend

    if not options.label:
        raise AnoncliError("--method attribute needs --label COLUMN (the label the attacker learns)")
    out = Path(options.out)
    if (out / "model.json").exists() and not options.overwrite:
        raise AnoncliError(f"{out}: already holds a trained model (use --overwrite to replace it)")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    started = time.time()
    corpus = options.open_corpus()
    if options.label not in corpus.label_columns:
        raise InputError(
            f"--label {options.label!r}: not a label column of {options.corpus} (columns: {', '.join(corpus.label_columns) or 'none'})"
        )
    pairs = [(u, u.path) for u in corpus.utterances]
    backend = ResemblyzerBackend()
    data = extract(pairs, backend, backend, need_signal=False, need_attr=True, corpus_root=corpus.root)
    labels = [u.labels.get(options.label) for u in corpus.utterances]
    speakers = [u.speaker for u in corpus.utterances]
    specs, notes = candidate_columns([u.labels for u in corpus.utterances], speakers, [options.label])
    if not specs:
        raise InputError(f"--label {options.label!r}: cannot be learned here ({'; '.join(notes)})")
    spec = specs[0]
    x = data.original.features
    summary, _, _ = run_attribute(spec, labels, speakers, x, x, data.ok, seed=options.seed, attackers=("original",))
    keep = np.array([data.ok[i] and labels[i] in spec.classes for i in range(len(labels))])
    y = np.array([spec.classes.index(labels[i]) for i in np.flatnonzero(keep)])
    head = LogisticHead(x.shape[1], len(spec.classes)).fit(x[keep], y, derive_seed(options.seed, "final"))
    config = {
        "kind": MODEL_KIND,
        "label": spec.column,
        "classes": spec.classes,
        "c": L2_C,
        "features": "resemblyzer-256+logmel-160+prosody-17",
        "n_features": int(x.shape[1]),
        "corpus": str(corpus.root.resolve()),
        "n_train": int(keep.sum()),
        "seed": options.seed,
        "cross_validated": summary["original"],
    }
    save_attacker(out, head, config)
    return {
        "out": str(out),
        "label": spec.column,
        "classes": spec.classes,
        "n_train": int(keep.sum()),
        "cv_accuracy": summary["original"]["acc"],
        "cv_chance": summary["original"]["chance"],
        "seconds": round(time.time() - started, 1),
    }
