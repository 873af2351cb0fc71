"""Evaluation of representation-level outputs: a service and an attacker learn on intercepted outputs.

`anoncli evaluate` calls `evaluate_features` when an anonymized folder holds
feature vectors (Siamese, RDAL-M `--emit features|both`) or RDAL-M's
speech-suppressed audio. It plays both sides of the papers' threat model:

* the *service* trains its utility head (gender MLP for Siamese, event
  classifier for RDAL-M) on the intercepted outputs and is scored on held-out
  items: utility accuracy;
* the *attacker* trains its own classifier on the same intercepted outputs:
  a closed-set speaker-ID MLP within one gender (Siamese) or a speech-presence
  MLP (RDAL-M); attacker accuracy, chance level and ROC AUC (binary attributes).

For RDAL-M audio outputs it also trains the speech-presence attacker on the
unmasked mixtures (so the drop is visible side by side) and measures the
separation SDR against the clean event stems the mixture maker wrote.

Every prediction is an out-of-fold prediction (cross-validation over the
evaluated items), so each utterance gets one row per probe.

`anoncli evaluate` (the `FeatureProbe` below) plans the probes from the
method's declared labels (`Method.utility_label`, `private_label`,
`private_within`; `--utility COL` and `--private COL` choose others) and
writes them under stable keys (`stable_summary`), e.g.
`features.utility.gender.accuracy`, `features.attacker.speaker.auc`,
`features.attacker_audio.speech.auc`, `features.sdr.sdr_db_mean`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from anoncli.evaluation.probes import Probe, ProbeContext, ProbeResult
from anoncli.scoring.metrics import normalised_accuracy
from anoncli.scoring.probe import cross_validated_probe, enrolment_split
from anoncli.scoring.signal_metrics import sdr_db

__all__ = ["evaluate_features", "default_probes", "FeatureProbe", "method_labels", "label_probes", "stable_summary"]

# What an attacker and a service learn from feature vectors of a method that declares no probes of its own.
GENERIC_FEATURE_PROBES = ("utility:gender", "attacker:speaker|gender")


class NoHeldOutUtterances(ValueError):
    """Every utterance with a feature output is of a speaker the model saw: there is nothing unseen to measure."""


def evaluate_features(
    original_corpus,
    anonymized_dir,
    manifest_table,
    probes=None,
    seed: int = 0,
    labels: dict | None = None,
    enrol_s: float | None = None,
    exclude_seen: bool = True,
):
    """Train utility heads and attackers on intercepted outputs; return per-utterance rows and a summary.

    Args:
        original_corpus: corpus root (path) of the input; needed for RDAL-M audio
            (the unmasked-mixture attacker and the SDR against clean stems named in
            its metadata), ignored for feature-only outputs.
        anonymized_dir: the OUT folder of `anoncli anonymize` (features under
            OUT/features/*.npy, audio under OUT/...; paths from the manifest).
        manifest_table: the manifest (pyarrow.Table or pandas.DataFrame) with at
            least utt_id, output_path, status, method and the label columns;
            `features_path` when a method wrote both audio and features.
        probes: list of probe names, or None for the method's defaults:
            "utility:<column>" (e.g. "utility:gender", "utility:event"),
            "attacker:<column>" (e.g. "attacker:speech_present"),
            "attacker:<column>|<group>" (e.g. "attacker:speaker|gender": one
            attacker per value of <group>, i.e. speaker-ID within one gender),
            "sdr" (RDAL-M audio: separation SDR vs clean event stem),
            "attacker-audio:<column>" (the attacker on log-mel statistics of the
            output audio, e.g. RDAL-M's masked audio),
            "attacker-unmasked:<column>" (the same attacker on the original input audio).
            "attacker:" and "utility:" read the feature vectors when the run wrote
            them and fall back to log-mel statistics of the output audio.
        seed: seed for folds and classifier initialisation.
        labels: {"utility", "private", "within"} label columns; when given (and
            `probes` is None) the probes are planned from them (`label_probes`)
            instead of the method's declared probe list.
        enrol_s: when given, the closed-set speaker attacker ("attacker:speaker",
            within groups or not) enrols on about `enrol_s` seconds of each
            speaker (the manifest's `duration_s`; `scoring.probe.enrolment_split`)
            and is scored on the rest of that speaker's items, instead of
            cross-validating over all of them.
        exclude_seen: False keeps the speakers the model saw (for a figure that
            says so); the `split` == "train" rows are dropped either way.

    Only held-out items are evaluated: rows with a `split` label of "train" are
    dropped, and so are speakers the model card lists as `train_speakers`
    (read from OUT/run.json's method config when present).

    Returns:
        (rows, summary): rows is a list of dicts, one per (utterance, probe):
        {"utt_id", "probe", "label", "predicted", "correct", "score"} (score =
        probability of the positive class for binary probes, else of the
        predicted class; "sdr_db" for the sdr probe). summary maps each probe
        name to {"accuracy", "chance", "auc" (binary only), "n", "classes",
        "model" ("mlp" or "linear", the stronger), "folds" ("speaker-disjoint"
        or "stratified"), "normalised" (100·(1 − |acc − chance| / (1 − chance)),
        attackers only)}; a grouped attacker adds "groups" (one entry per group);
        a probe that cannot run is {"skipped": reason}; "sdr" gives
        {"sdr_db_mean", "sdr_db_median", "n"} plus, with a speech_present
        column, the means with and without speech and the input mixture's SDR.
    """
    import pandas as pd

    anonymized_dir = Path(anonymized_dir)
    frame = manifest_table.to_pandas() if hasattr(manifest_table, "to_pandas") else pd.DataFrame(manifest_table)
    if "status" in frame:
        frame = frame[frame["status"] == "ok"]
    frame = held_out_rows(frame, anonymized_dir if exclude_seen else None)
    if frame.empty:
        raise NoHeldOutUtterances(
            "every utterance is of a speaker the model saw in training or validation, and those are left out"
        )
    if "utt_id" in frame:  # folds follow row order: the manifest's order (batches finish in any order) must not
        frame = frame.sort_values("utt_id", kind="stable")  # change the figures
    frame = frame.reset_index(drop=True)
    method = str(frame["method"].iloc[0]) if "method" in frame else ""
    has_features = _feature_column(frame) is not None
    if probes is None and labels is not None:
        probes = label_probes(labels, has_features, frame, declared_probes(method)[1])
    if probes is None:
        probes = default_probes(method, has_features, frame)
    cache: dict[str, np.ndarray] = {}

    def inputs(kind: str) -> np.ndarray:
        """Attacker inputs of one kind ("features", "audio" or the unmasked originals), computed once; ValueError when originals are needed but not given."""
        if kind not in cache:
            if kind == "features":
                cache[kind] = load_feature_matrix(frame, anonymized_dir)
            elif kind == "audio":
                cache[kind] = audio_descriptors([anonymized_dir / p for p in frame["output_path"]])
            else:
                if original_corpus is None:
                    raise ValueError("the unmasked attacker needs the original corpus folder")
                cache[kind] = audio_descriptors([Path(original_corpus) / p for p in frame["source_path"]])
        return cache[kind]

    rows: list[dict] = []
    summary: dict[str, dict] = {}
    for probe in probes:
        kind, _, target = probe.partition(":")
        if kind == "sdr":
            rows_sdr, summary[probe] = _sdr_probe(frame, anonymized_dir, original_corpus)
            rows += rows_sdr
            continue
        source = {"attacker-unmasked": "original", "attacker-audio": "audio"}.get(kind)
        if source is None:
            source = "features" if has_features else "audio"
        column, _, group_column = target.partition("|")
        if column not in frame:
            summary[probe] = {"skipped": f"no {column!r} column in the manifest"}
            continue
        if source == "audio" and ("output_path" not in frame or frame["output_path"].isna().any()):
            summary[probe] = {"skipped": "this run wrote no audio (features only)"}
            continue
        x = inputs(source)
        usable = frame[column].notna().to_numpy()
        groups = [None] if not group_column else sorted(frame.loc[usable, group_column].dropna().astype(str).unique())
        per_group = {}
        for value in groups:
            mask = usable if value is None else usable & (frame[group_column].astype(str) == value).to_numpy()
            idx = np.flatnonzero(mask)
            labels = frame.loc[idx, column].astype(str).to_numpy()
            if len(set(labels)) < 2:
                continue
            fold_groups, fold_kind = None, "stratified"
            if kind == "utility" and "speaker" in frame and column != "speaker":
                fold_groups = _speaker_groups_if_speaker_level(frame.loc[idx], column)
                fold_kind = "speaker-disjoint" if fold_groups is not None else fold_kind
            if kind == "utility" and fold_groups is None and "event_source_id" in frame:
                # mixtures cut from one recording stay in one fold (no source leaks into the service's head)
                sources = frame.loc[idx, "event_source_id"].astype(str).to_numpy()
                if len(set(sources)) >= 2 and (pd.Series(labels).groupby(sources).nunique() == 1).all():
                    fold_groups, fold_kind = sources, "source-disjoint"
            enrolment = bool(enrol_s) and kind == "attacker" and column == "speaker"
            if enrolment and "duration_s" not in frame:
                per_group[value or "all"] = {"skipped": "enrolment by duration needs a duration_s column"}
                continue
            try:
                folds = None
                if enrolment:  # one split: about enrol_s seconds of each speaker to learn from, the rest to test
                    fold_kind = f"enrolment {enrol_s:g} s per speaker"
                    folds = [enrolment_split(labels, frame.loc[idx, "duration_s"].to_numpy(float), enrol_s, seed)[1]]
                result = cross_validated_probe(x[idx], labels, fold_groups, seed=seed, folds=folds)
            except ValueError as err:
                per_group[value or "all"] = {"skipped": str(err)}
                continue
            for k, i in enumerate(idx[result["index"]]):
                rows.append(
                    {
                        "utt_id": frame.loc[i, "utt_id"],
                        "probe": probe,
                        "label": result["label"][k],
                        "predicted": result["predicted"][k],
                        "correct": result["label"][k] == result["predicted"][k],
                        "score": float(result["score"][k]),
                    }
                )
            entry = {k: result[k] for k in ("accuracy", "chance", "auc", "auc_ovr", "n", "classes", "model")}
            # with one speaker per class a random split lets the head learn the speakers: say so
            entry["folds"] = fold_kind
            if kind != "utility":
                entry["normalised"] = normalised_accuracy(result["accuracy"], result["chance"], full=1.0)
            per_group[value or "all"] = entry
        summary[probe] = (
            _combine(per_group) if group_column else per_group.get("all", {"skipped": "fewer than two classes"})
        )
    return rows, summary


def _combine(per_group: dict[str, dict]) -> dict:
    """Attacker within groups: item-weighted mean accuracy/chance, with each group's figures kept."""
    scored = {k: v for k, v in per_group.items() if "accuracy" in v}
    if not scored:
        return {"skipped": "no group has two classes", "groups": per_group}
    n = sum(v["n"] for v in scored.values())
    acc = sum(v["accuracy"] * v["n"] for v in scored.values()) / n
    chance = sum(v["chance"] * v["n"] for v in scored.values()) / n
    aucs = [(v.get("auc_ovr"), v["n"]) for v in scored.values() if v.get("auc_ovr") is not None]
    auc = sum(a * k for a, k in aucs) / sum(k for _, k in aucs) if aucs else None
    return {
        "accuracy": acc,
        "chance": chance,
        "auc": None,
        "auc_ovr": auc,
        "n": n,
        "normalised": normalised_accuracy(acc, chance, full=1.0),
        "groups": per_group,
    }


def _speaker_groups_if_speaker_level(frame, column: str):
    """Speaker-disjoint folds for a speaker-level label (gender) when every class has 2+ speakers."""
    per_speaker = frame.groupby("speaker")[column].nunique()
    if (per_speaker > 1).any():
        return None
    speakers_per_class = frame.groupby(column)["speaker"].nunique()
    if (speakers_per_class < 2).any():
        return None
    return frame["speaker"].astype(str).to_numpy()


# ---------------------------------------------------------------- inputs and filters
def _feature_column(frame) -> str | None:
    if "features_path" in frame and frame["features_path"].notna().all():
        return "features_path"
    if "output_path" in frame and frame["output_path"].astype(str).str.endswith(".npy").all():
        return "output_path"
    return None


def load_feature_matrix(frame, anonymized_dir: Path) -> np.ndarray:
    """One row per utterance; 2-D feature arrays are mean-pooled over their first axis."""
    column = _feature_column(frame)
    vectors = []
    for rel in frame[column]:
        value = np.load(Path(anonymized_dir) / rel, allow_pickle=False)
        vectors.append(value.mean(axis=0) if value.ndim == 2 else value.reshape(-1))
    return np.stack(vectors).astype(np.float32)


def audio_descriptors(paths: Sequence[Path], sample_rate: int = 16000) -> np.ndarray:
    """Log-mel (64 bands) mean, std and max over time: what an attacker on audio learns from."""
    import torch
    import torchaudio

    from anoncli.audio import read_audio, resample

    mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=512, hop_length=160, n_mels=64)
    out = []
    for path in paths:
        audio = read_audio(path)
        wave = resample(torch.from_numpy(audio.samples), audio.sample_rate, sample_rate)
        logmel = torch.log(mel(wave) + 1e-6)
        out.append(torch.cat([logmel.mean(1), logmel.std(1), logmel.amax(1)]).numpy())
    return np.stack(out).astype(np.float32)


def _train_speakers_from_run(anonymized_dir: Path) -> list[str]:
    """`train_speakers` anywhere in OUT/run.json (the method's config records them)."""
    path = Path(anonymized_dir) / "run.json"
    if not path.is_file():
        return []
    found: list[str] = []

    def walk(node):
        """Collect every `train_speakers` list in a JSON tree into `found`."""
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "train_speakers" and isinstance(value, list):
                    found.extend(str(v) for v in value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(path.read_text()))
    return found


def held_out_rows(frame, anonymized_dir: Path | None):
    """Drop items the model was trained on: split == train, or speakers in the card's train_speakers
    (read from `anonymized_dir`'s run.json; None keeps them)."""
    if "split" in frame and frame["split"].notna().any():
        frame = frame[frame["split"].astype(str) != "train"]
    train_speakers = set(_train_speakers_from_run(anonymized_dir)) if anonymized_dir is not None else set()
    if train_speakers and "speaker" in frame:
        frame = frame[~frame["speaker"].astype(str).isin(train_speakers)]
    return frame


def declared_probes(method: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(probes on feature vectors, probes on audio) that `method` declares; none for an unknown method."""
    from anoncli.methods import REGISTRY, method_class

    if method not in REGISTRY:
        return (), ()
    cls = method_class(method)
    return tuple(cls.feature_probes), tuple(cls.audio_probes)


def default_probes(method: str, has_features: bool, frame) -> list[str]:
    """The probes the method declares for what the run wrote: feature vectors, audio, or both.

    Feature vectors of a method that declares no feature probes get GENERIC_FEATURE_PROBES.
    """
    on_features, on_audio = declared_probes(method)
    probes = list(on_features or GENERIC_FEATURE_PROBES) if has_features else []
    paths = frame["output_path"] if "output_path" in frame else None
    audio = paths is not None and paths.notna().all() and not paths.astype(str).str.endswith(".npy").any()
    if audio:
        probes += on_audio
    return probes


# ---------------------------------------------------------------- labels and stable summary keys
GENERIC_LABELS = {"utility": "gender", "private": "speaker", "within": "gender"}


def method_labels(method: str) -> dict:
    """{"utility", "private", "within"} a method declares (`utility_label`, `private_label`,
    `private_within`); GENERIC_LABELS for a method that declares none."""
    from anoncli.methods import REGISTRY, method_class

    if method not in REGISTRY:
        return dict(GENERIC_LABELS)
    cls = method_class(method)
    utility = getattr(cls, "utility_label", None)
    if not utility:
        return dict(GENERIC_LABELS)
    return {
        "utility": utility,
        "private": getattr(cls, "private_label", None),
        "within": getattr(cls, "private_within", None),
    }


def resolve_labels(method: str, utility: str | None = None, private: str | None = None) -> dict:
    """The method's labels with `--utility` / `--private` overrides. A private label other than the
    method's own is attacked over all items (no within-group split)."""
    labels = method_labels(method)
    if utility:
        labels["utility"] = utility
    if private and private != labels.get("private"):
        labels["private"], labels["within"] = private, None
    return labels


def _column_for(name: str | None, frame) -> str | None:
    """A label column of the manifest; `speech` falls back to the older 1/0 `speech_present`."""
    if not name:
        return None
    if name not in frame and name == "speech" and "speech_present" in frame:
        return "speech_present"
    return name


def label_probes(labels: dict, has_features: bool, frame, audio_probes=()) -> list[str]:
    """Probe names for `labels` on what the run wrote: feature vectors (utility head, attacker) and,
    for a method with audio probes, the attacker on its audio, on the unmasked input, and the SDR."""
    utility, private = _column_for(labels.get("utility"), frame), _column_for(labels.get("private"), frame)
    within = labels.get("within")
    probes = []
    if has_features:
        if utility:
            probes.append(f"utility:{utility}")
        if private:
            probes.append(f"attacker:{private}|{within}" if within else f"attacker:{private}")
    paths = frame["output_path"] if "output_path" in frame else None
    audio = paths is not None and paths.notna().all() and not paths.astype(str).str.endswith(".npy").any()
    if audio and audio_probes and private:
        probes += [f"attacker-audio:{private}", f"attacker-unmasked:{private}"]
        probes += ["sdr"] if "sdr" in audio_probes else []
    return probes


_FIGURES = ("accuracy", "chance", "auc", "n", "normalised", "model", "folds", "classes")


def stable_summary(raw: dict, labels: dict) -> dict:
    """The `features` section of summary.json under stable keys, from `evaluate_features`' summary.

    {"labels": {"utility", "private", "within"},
     "utility": {COL: {accuracy, chance, n, model, folds, classes}},
     "attacker": {COL: {accuracy, chance, auc, normalised, n, model, [within, groups]}},
     "attacker_audio": {COL: {...}}, "attacker_unmasked": {COL: {...}},
     "sdr": {sdr_db_mean, sdr_db_median, n, ...}, "probes": the raw summary}
    (`anoncli evaluate` puts the raw entries under their probe names instead of "probes".)
    `auc` is the binary ROC AUC, or for K > 2 classes the macro one-vs-rest AUC
    (averaged over the within-groups, weighted by items). COL is the label as
    asked for (`speech` also when the corpus only has `speech_present`).
    """
    out: dict = {"labels": {k: v for k, v in labels.items() if v}}
    names = {
        "utility": "utility",
        "attacker": "attacker",
        "attacker-audio": "attacker_audio",
        "attacker-unmasked": "attacker_unmasked",
    }
    asked = {labels.get("utility"), labels.get("private")}
    for probe, entry in raw.items():
        if probe == "sdr":
            out["sdr"] = entry
            continue
        kind, _, target = probe.partition(":")
        column, _, within = target.partition("|")
        section = names.get(kind)
        if section is None:
            continue
        if column == "speech_present" and "speech" in asked:
            column = "speech"
        if "skipped" in entry and "accuracy" not in entry:
            out.setdefault(section, {})[column] = {"skipped": entry["skipped"]}
            continue
        figures = {k: entry[k] for k in _FIGURES if k in entry and entry[k] is not None}
        if entry.get("auc") is None and entry.get("auc_ovr") is not None:
            figures["auc"] = entry["auc_ovr"]
        if section == "utility":
            figures.pop("normalised", None)
        if within:
            figures["within"] = within
            figures["groups"] = {
                g: {k: v for k, v in e.items() if k in ("accuracy", "chance", "auc", "auc_ovr", "n")}
                for g, e in entry.get("groups", {}).items()
            }
        out.setdefault(section, {})[column] = figures
    out["probes"] = raw
    return out


def _sdr_probe(frame, anonymized_dir: Path, original_corpus) -> tuple[list[dict], dict]:
    """SDR of the output audio against the clean event stem named in the corpus' clean_event column."""
    import torch

    from anoncli.audio import read_audio, resample

    if original_corpus is None or "clean_event" not in frame:
        return [], {"skipped": "needs the original corpus and a clean_event column"}
    rows, values, inputs = [], [], []
    for _, row in frame.iterrows():
        if not isinstance(row.get("output_path"), str) or not row["output_path"] or not row.get("clean_event"):
            continue
        ref = read_audio(Path(original_corpus) / row["clean_event"])
        est = read_audio(Path(anonymized_dir) / row["output_path"])
        est_samples = resample(torch.from_numpy(est.samples), est.sample_rate, ref.sample_rate).numpy()
        value = sdr_db(ref.samples, est_samples)
        # the same measure for the untouched mixture: how much the mask improved on doing nothing
        mixture = read_audio(Path(original_corpus) / row["source_path"])
        baseline = sdr_db(
            ref.samples, resample(torch.from_numpy(mixture.samples), mixture.sample_rate, ref.sample_rate).numpy()
        )
        values.append(value)
        inputs.append(baseline)
        rows.append(
            {
                "utt_id": row["utt_id"],
                "probe": "sdr",
                "label": None,
                "predicted": None,
                "correct": None,
                "score": value,
                "sdr_db": value,
                "sdr_input_db": baseline,
            }
        )
    if not values:
        return [], {"skipped": "no audio outputs with a clean event stem"}
    summary = {"sdr_db_mean": float(np.mean(values)), "sdr_db_median": float(np.median(values)), "n": len(values)}
    if "speech_present" in frame:
        # Without speech the input SDR is unbounded; report separation where there is something to separate.
        flags = {
            r["utt_id"]: str(v).strip().lower() in ("1", "true", "yes")
            for r, v in zip(frame.to_dict("records"), frame["speech_present"])
        }
        speech = [i for i, r in enumerate(rows) if flags.get(r["utt_id"])]
        silent = [i for i, r in enumerate(rows) if not flags.get(r["utt_id"])]
        if speech:
            summary.update(
                {
                    "sdr_db_mean_with_speech": float(np.mean([values[i] for i in speech])),
                    "sdr_input_db_mean_with_speech": float(np.mean([inputs[i] for i in speech])),
                    "n_with_speech": len(speech),
                }
            )
        if silent:
            summary.update(
                {
                    "sdr_db_mean_without_speech": float(np.mean([values[i] for i in silent])),
                    "n_without_speech": len(silent),
                }
            )
    return rows, summary


class FeatureProbe(Probe):
    """`evaluate`'s plugin for representation-level outputs: runs `evaluate_features` on the manifest.

    Applies when the output holds feature vectors, or when a method of the run
    declares probes on its audio. Its figures (`features.<probe>.<figure>`) are
    known only after it ran, so `--gate` checks their names at the end.
    """

    kind = "features"
    needs = frozenset()
    table_rank = 60
    deferred_figures = True

    @classmethod
    def available(cls, ctx: ProbeContext) -> tuple[list[Probe], list[str]]:
        wanted = ctx.pairing.feature_outputs or any(declared_probes(m)[1] for m in ctx.pairing.methods)
        return ([cls()] if wanted else []), []

    def run(self, ctx: ProbeContext) -> ProbeResult:
        method = ctx.pairing.methods[0] if ctx.pairing.methods else ""
        labels = resolve_labels(method, getattr(ctx.config, "utility", None), getattr(ctx.config, "private", None))
        table = ctx.pairing.manifest_table
        frame = table.to_pandas() if hasattr(table, "to_pandas") else table
        if "status" in frame:
            frame = frame[frame["status"] == "ok"]
        probes = label_probes(labels, _feature_column(frame) is not None, frame, declared_probes(method)[1])
        try:
            rows, summary = evaluate_features(
                ctx.config.original, ctx.config.anonymized, table, probes=probes, seed=ctx.config.seed
            )
        except (NotImplementedError, NoHeldOutUtterances) as err:
            return ProbeResult(notes=[f"features: not evaluated ({err})"])
        # the raw entries stay under their probe names ("utility:gender", ...) next to the stable keys
        stable = stable_summary(summary, labels)
        stable.pop("probes", None)
        return ProbeResult({**summary, **stable}, tables={"feature_scores.parquet": rows})

    @classmethod
    def table_rows(cls, key: str, entry: dict):
        from anoncli.evaluation.probes import fmt

        rows = []
        for section, title in (
            ("utility", "service"),
            ("attacker", "attacker"),
            ("attacker_audio", "attacker on audio"),
            ("attacker_unmasked", "attacker on unmasked input"),
        ):
            for column, figures in (entry.get(section) or {}).items():
                if "accuracy" not in figures:
                    continue
                within = f" within {figures['within']}" if figures.get("within") else ""
                text = f"acc {fmt(figures['accuracy'], 3)} (chance {fmt(figures.get('chance'), 3)})"
                if section != "utility":
                    text += f", AUC {fmt(figures.get('auc'), 3)}"
                rows.append((f"features {title}: {column}{within}", "", text, ""))
        sdr = entry.get("sdr") or {}
        if "sdr_db_mean" in sdr:
            rows.append(("features SDR dB (mean)", "", fmt(sdr["sdr_db_mean"], 2), ""))
        return rows
