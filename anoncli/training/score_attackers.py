"""`anoncli train --method score-attackers`: the attribute attackers shipped for anonymize's per-utterance scores.

CORPUS is a folder holding the development corpora (`--param corpora=` names
them, default librispeech-dev,ravdess-dev,emodb-dev). Each utterance becomes
one `anoncli.scoring.attackers.attacker_features` vector (the resemblyzer
embedding and 17 F0/loudness statistics, exactly as the scorer computes them,
`QuickScorer.describe`), and each attacker is a standardisation plus a
multinomial logistic regression (scikit-learn, lbfgs):

* `gender`: every corpus with a gender label (LibriSpeech, RAVDESS, EmoDB);
* `emotion-ravdess`: RAVDESS's 8 English emotions;
* `emotion-emodb`: EmoDB's 7 German emotions (the two corpora name and act
  different emotion sets, so each keeps its own model; the scorer picks the one
  that knows a corpus's labels).

Held-out accuracy is measured on unseen speakers: nested speaker-grouped
cross-validation (outer folds by speaker score the model; inner folds, also by
speaker, choose the regularisation C by log loss), so no speaker of a test fold
is seen in training or in choosing C. The shipped models are then fitted on all
the data with C chosen by the same grouped cross-validation.

The run goes through the training loop (`anoncli.training.loop.fit`) as one
epoch of one step per attacker (no gradient steps: the fits are scikit-learn's),
so OUT is a run folder like any trainer's (config.json, the checkpoint holding
the fitted attackers, log, model.json) and a rerun of a finished run only
rewrites the outputs. OUT also receives `<attacker>.safetensors` (mean,
scale, weight, bias; float32), `card.json` (data, licences, classes, held-out
figures, command), and `cache/features-<corpus>.npz` (the feature vectors,
reused by a rerun with --overwrite). Copy the safetensors files and card.json
into `anoncli/pretrained/attackers/` to ship them
(recipes/score_attackers/README.md). Settings (`--param`): `corpora`,
`c_grid` (the regularisation values tried), `outer_folds`, `inner_folds`.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from anoncli.errors import AnoncliError, InputError
from anoncli.training.loop import FitResult, TrainConfig, Trainer, data_fingerprint

DEFAULT_CORPORA = ("librispeech-dev", "ravdess-dev", "emodb-dev")
LICENCES = {
    "librispeech-dev": "LibriSpeech (Panayotov et al., ICASSP 2015), CC BY 4.0",
    "ravdess-dev": "RAVDESS (Livingstone & Russo, PLoS ONE 2018), CC BY-NC-SA 4.0",
    "emodb-dev": "Berlin Database of Emotional Speech (Burkhardt et al., Interspeech 2005), free for research",
}
# attacker -> (label column, corpora it learns from; None = every corpus with that label)
ATTACKERS = {
    "gender": ("gender", None),
    "emotion-ravdess": ("emotion", ("ravdess-dev",)),
    "emotion-emodb": ("emotion", ("emodb-dev",)),
}
CHUNK = 32
FEATURES_VERSION = "2"  # 2: the language label too


@dataclass
class ScoreAttackersConfig(TrainConfig):
    """The attackers' settings: the `corpora` (folders under CORPUS) they learn from, the regularisation
    values `c_grid` tried, and the speaker-grouped folds: `outer_folds` score the held-out figures,
    `inner_folds` choose C. The fits run once: `epochs` is 1."""

    corpora: list[str] = field(default_factory=lambda: list(DEFAULT_CORPORA))
    c_grid: list[float] = field(default_factory=lambda: [0.003, 0.01, 0.03, 0.1, 0.3, 1.0])
    outer_folds: int = 5
    inner_folds: int = 4

    def check(self) -> None:
        """Raise AnoncliError for epochs other than 1, an empty C grid or fewer than 2 folds."""
        super().check()
        if self.epochs != 1:
            raise AnoncliError(f"--epochs {self.epochs}: score-attackers fits its models once (epochs 1)")
        if not self.c_grid or min(self.c_grid) <= 0:
            raise AnoncliError("--param c_grid: expected one or more positive numbers")
        for name in ("outer_folds", "inner_folds"):
            if getattr(self, name) < 2:
                raise AnoncliError(f"--param {name}={getattr(self, name)}: expected at least 2")
        if not self.corpora:
            raise AnoncliError("--param corpora: expected one or more corpus folders")


PRESETS = {"default": ScoreAttackersConfig(epochs=1, batch_size=1, amp=False, threads=1)}


def _log(message: str) -> None:
    print(f"score-attackers: {message}", file=sys.stderr, flush=True)


def _features(corpus, name: str, cache_dir: Path) -> dict:
    """{"features" (N, D), "labels" {column: [str|None]}, "speakers" [str], "utt_ids"} of one opened corpus
    (cached in CACHE_DIR/features-<name>.npz)."""
    from anoncli.corpus.reading import read_utterance_audio
    from anoncli.scoring.attackers import attacker_features
    from anoncli.scoring.quick_scores import QuickScorer, to_16k

    cache = cache_dir / f"features-{name}.npz"
    columns = [c for c in ("gender", "emotion", "language") if c in corpus.label_columns]
    ids = [u.utt_id for u in corpus.utterances]
    if cache.is_file():
        data = np.load(cache, allow_pickle=False)
        if str(data["version"]) == FEATURES_VERSION and data["utt_ids"].tolist() == ids:
            return {
                "features": data["features"],
                "utt_ids": ids,
                "speakers": data["speakers"].tolist(),
                "labels": {c: [v or None for v in data[f"label_{c}"].tolist()] for c in columns},
            }
    scorer = QuickScorer("cpu")
    features, kept = [], []
    started = time.time()
    for start in range(0, len(corpus.utterances), CHUNK):
        chunk = corpus.utterances[start : start + CHUNK]
        waves = []
        for utt in chunk:
            audio = read_utterance_audio(utt)
            waves.append(to_16k(audio.samples, audio.sample_rate))
        for utt, side in zip(chunk, scorer.describe(waves)):
            if side.embedding is None:
                _log(f"{name}: {utt.rel_path} left out ({side.problem})")
                continue
            features.append(attacker_features(side.embedding, side.prosody))
            kept.append(utt)
    _log(f"{name}: {len(kept)} utterances described in {time.time() - started:.0f} s")
    result = {
        "features": np.stack(features),
        "utt_ids": [u.utt_id for u in kept],
        "speakers": [u.speaker or u.utt_id for u in kept],
        "labels": {c: [u.labels.get(c) for u in kept] for c in columns},
    }
    if result["utt_ids"] == ids:  # cache only complete corpora (the check above compares every id)
        np.savez(
            cache,
            version=np.array(FEATURES_VERSION),
            features=result["features"],
            utt_ids=np.array(ids),
            speakers=np.array(result["speakers"]),
            **{f"label_{c}": np.array([v or "" for v in result["labels"][c]]) for c in columns},
        )
    return result


def _model(c: float, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000, random_state=seed))


def _group_folds(groups: np.ndarray, n_splits: int, seed: int):
    from sklearn.model_selection import GroupKFold

    n = min(n_splits, len(set(groups.tolist())))
    if n < 2:
        raise AnoncliError("needs at least 2 speakers for speaker-disjoint folds")
    return GroupKFold(n_splits=n, shuffle=True, random_state=seed).split(np.zeros(len(groups)), groups=groups)


def _choose_c(x: np.ndarray, y: np.ndarray, groups: np.ndarray, config: ScoreAttackersConfig) -> float:
    """The C with the lowest speaker-grouped cross-validated log loss."""
    from sklearn.metrics import log_loss

    classes = np.unique(y)
    losses = {}
    seed = config.seed
    for c in config.c_grid:
        total, count = 0.0, 0
        for train, test in _group_folds(groups, config.inner_folds, seed):
            if len(np.unique(y[train])) < len(classes):
                continue
            model = _model(c, seed).fit(x[train], y[train])
            total += log_loss(y[test], model.predict_proba(x[test]), labels=model.classes_) * len(test)
            count += len(test)
        losses[c] = total / count if count else np.inf
    return min(losses, key=losses.get)


def _held_out(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, sources: np.ndarray, config: ScoreAttackersConfig
) -> dict:
    """Nested speaker-grouped cross-validation: accuracy, UAR, mean p(true), log loss on unseen speakers."""
    from sklearn.metrics import balanced_accuracy_score, log_loss

    classes = np.unique(y)
    proba = np.full((len(y), len(classes)), np.nan)
    chosen = []
    for train, test in _group_folds(groups, config.outer_folds, config.seed):
        c = _choose_c(x[train], y[train], groups[train], config)
        chosen.append(c)
        model = _model(c, config.seed).fit(x[train], y[train])
        columns = [list(classes).index(k) for k in model.classes_]
        proba[np.ix_(test, columns)] = model.predict_proba(x[test])
    proba = np.nan_to_num(proba, nan=0.0)
    predicted = classes[np.argmax(proba, axis=1)]
    p_true = proba[np.arange(len(y)), np.searchsorted(classes, y)]
    majority = max(np.mean(y == k) for k in classes)

    def figures(mask: np.ndarray) -> dict:
        """Utterance and speaker counts, accuracy, UAR and mean true-class posterior over the rows in `mask`."""
        return {
            "utterances": int(mask.sum()),
            "speakers": len(set(groups[mask].tolist())),
            "accuracy": round(float(np.mean(predicted[mask] == y[mask])), 4),
            "uar": round(float(balanced_accuracy_score(y[mask], predicted[mask])), 4),
            "mean_p_true": round(float(np.mean(p_true[mask])), 4),
        }

    result = figures(np.ones(len(y), bool))
    result.update(
        log_loss=round(float(log_loss(y, np.clip(proba, 1e-12, 1), labels=classes)), 4),
        chance_uniform=round(1 / len(classes), 4),
        chance_majority=round(float(majority), 4),
        folds=f"{config.outer_folds} outer speaker-grouped folds, C chosen by {config.inner_folds} inner "
        f"speaker-grouped folds (log loss)",
        c_per_fold=chosen,
    )
    if len(set(sources.tolist())) > 1:
        result["per_corpus"] = {s: figures(sources == s) for s in sorted(set(sources.tolist()))}
    return result


def _binary_as_softmax(weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A two-class logistic regression (1, D) as two softmax rows with the same probabilities."""
    if weight.shape[0] != 1:
        return weight, bias
    return np.concatenate([-weight / 2, weight / 2]), np.concatenate([-bias / 2, bias / 2])


class ScoreAttackersTrainer(Trainer):
    """`anoncli train --method score-attackers`: the attackers fitted on the corpora under `options.corpus`,
    one loop step each, written with their card to `options.out`. Raises InputError for a missing corpus
    folder, AnoncliError for fewer than 2 speakers of a label."""

    method = "score-attackers"
    config_class = ScoreAttackersConfig
    presets = PRESETS
    default_preset = "default"
    selection = ("val_score", "max")  # nothing to select: the one epoch is the model

    def setup(self) -> None:
        from anoncli.corpus import open_corpus

        root, names = Path(self.options.corpus), list(self.config.corpora)
        for name in names:
            if not (root / name).is_dir():
                raise InputError(f"{root / name}: no such corpus folder (CORPUS holds the development corpora)")
        corpora = {name: open_corpus(root / name) for name in names}
        self.data_fingerprint = data_fingerprint([u for corpus in corpora.values() for u in corpus.utterances])
        self.data = {name: _features(corpus, name, self.run.cache_dir) for name, corpus in corpora.items()}
        self.fitted: dict[str, dict] = {}  # attacker -> {"tensors": {mean, scale, weight, bias}, "entry": card entry}

    def modules(self):
        return {}

    def batches(self, epoch: int):
        return list(ATTACKERS)

    def train_step(self, attacker_name: str) -> dict[str, float]:
        """Fit one attacker (nested speaker-grouped cross-validation, then all the data); no loss to report."""
        from anoncli.scoring.attackers import Attacker, normalise_label

        column, sources = ATTACKERS[attacker_name]
        data, config = self.data, self.config
        rows = []
        for name in sources or config.corpora:
            if name not in data or column not in data[name]["labels"]:
                continue
            for i, value in enumerate(data[name]["labels"][column]):
                label = normalise_label(column, value)
                if label is not None:
                    rows.append((name, i, label))
        if not rows:
            _log(f"{attacker_name}: no labelled utterances; not trained")
            return {}
        x = np.stack([data[n]["features"][i] for n, i, _ in rows]).astype(np.float64)
        y = np.array([label for _, _, label in rows])
        groups = np.array([f"{n}:{data[n]['speakers'][i]}" for n, i, _ in rows])
        corpora = np.array([n for n, _, _ in rows])
        spoken = {(data[n]["labels"].get("language") or [None] * (i + 1))[i] for n, i, _ in rows}
        language = spoken.pop().strip().lower() if len(spoken) == 1 and None not in spoken else None
        held_out = _held_out(x, y, groups, corpora, config)
        c = _choose_c(x, y, groups, config)
        model = _model(c, config.seed).fit(x, y)
        scaler, regression = model[0], model[1]
        weight, bias = _binary_as_softmax(regression.coef_, regression.intercept_)
        attacker = Attacker(
            attacker_name, column, [str(k) for k in regression.classes_], scaler.mean_, scaler.scale_, weight, bias
        )
        if not np.allclose(attacker.probabilities(x[:50]), model.predict_proba(x[:50]), atol=1e-5):
            raise AnoncliError(f"{attacker_name}: exported weights do not reproduce the model")
        entry = {
            "name": attacker_name,
            "attribute": column,
            "file": f"{attacker_name}.safetensors",
            "classes": attacker.classes,
            "language": language,
            "model": "standardisation + multinomial logistic regression (scikit-learn lbfgs)",
            "C": float(c),
            "training_data": {
                n: {
                    "utterances": int(np.sum(corpora == n)),
                    "speakers": len({g for g, s in zip(groups, corpora) if s == n}),
                }
                for n in sorted(set(corpora.tolist()))
            },
            "held_out_speakers": held_out,
        }
        self.fitted[attacker_name] = {
            "tensors": {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in attacker.tensors().items()},
            "entry": entry,
        }
        _log(
            f"{attacker_name}: {len(y)} utterances, {len(set(groups.tolist()))} speakers, held-out accuracy "
            f"{held_out['accuracy']:.3f} (UAR {held_out['uar']:.3f}, chance {held_out['chance_majority']:.3f}), C={c}"
        )
        return {}

    def validate(self) -> dict[str, float]:
        """Each attacker's held-out (nested cross-validated) accuracy and UAR."""
        figures = {}
        for name, fitted in self.fitted.items():
            held_out = fitted["entry"]["held_out_speakers"]
            figures.update({f"val_{name}_accuracy": held_out["accuracy"], f"val_{name}_uar": held_out["uar"]})
        return figures

    def extra_state(self) -> dict:
        # the card entries are plain JSON values: a round trip makes numpy scalars python ones (weights_only)
        return {
            "attackers": {
                name: {"tensors": fitted["tensors"], "entry": json.loads(json.dumps(fitted["entry"]))}
                for name, fitted in self.fitted.items()
            }
        }

    def load_extra_state(self, state: dict) -> None:
        self.fitted = dict(state.get("attackers") or {})

    def card(self, result: FitResult) -> dict:
        return {
            "attackers": {name: fitted["entry"]["held_out_speakers"] for name, fitted in self.fitted.items()},
            "files": {"attackers": "card.json and <attacker>.safetensors (anoncli/pretrained/attackers form)"},
        }

    def finish(self, result: FitResult) -> dict:
        """Write `<attacker>.safetensors` and the attackers' card.json (the shipped form) into the run folder."""
        from anoncli import __version__
        from anoncli.models.safetensors_io import save_file
        from anoncli.scoring.attackers import FEATURE_NAMES

        out, names = result.run.root, list(self.config.corpora)
        entries = [self.fitted[name]["entry"] for name in ATTACKERS if name in self.fitted]
        for entry in entries:
            save_file(
                {k: v.contiguous() for k, v in self.fitted[entry["name"]]["tensors"].items()},
                out / entry["file"],
                metadata={
                    "attacker": entry["name"],
                    "attribute": entry["attribute"],
                    "features": FEATURE_NAMES,
                    "classes": json.dumps(entry["classes"]),
                },
            )
        default = list(self.config.corpora) == list(DEFAULT_CORPORA)
        card = {
            "kind": "anoncli-score-attackers",
            "features": FEATURE_NAMES,
            "feature_detail": "256-d resemblyzer (GE2E) embedding, L2-normalised, then 17 statistics of log F0 "
            "(DIO/StoneMask), frame loudness and voicing (anoncli.scoring.features.prosody_features)",
            "data": {n: LICENCES.get(n, "see the corpus") for n in names},
            "licence_note": "weights are derived from the corpora above; RAVDESS-derived models carry its "
            "non-commercial (CC BY-NC-SA 4.0) terms, EmoDB-derived ones its research-use terms",
            "attackers": entries,
            "command": "anoncli train --method score-attackers ../shared/corpora --out runs/score-attackers "
            f"--seed {self.config.seed}" + ("" if default else f" --param corpora={','.join(names)}"),
            "seed": self.config.seed,
            "data_fingerprint": self.data_fingerprint,
            "anoncli_version": __version__,
            "trained_s": round(result.seconds, 1),
        }
        (out / "card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        return {"attackers": {e["name"]: e["held_out_speakers"]["accuracy"] for e in entries}}
