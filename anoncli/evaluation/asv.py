"""Speaker verification probe: enrolment/trial split, OO/OA/AA trials, EER and minDCF.

Conditions (VoicePrivacy naming):
  OO  original enrolment, original trials (how well the verifier works at all)
  OA  original enrolment, anonymized trials (ignorant attacker)
  AA  anonymized enrolment, anonymized trials (lazy-informed attacker)
A speaker model is the L2-normalised mean of its enrolment embeddings; a trial
score is the cosine between the model and the trial utterance's embedding.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anoncli.errors import InputError
from anoncli.evaluation.probes import Probe, ProbeContext, ProbeResult, Row, fmt, fmt_ci
from anoncli.scoring import metrics
from anoncli.seeding import derive_seed

CONDITIONS = ("OO", "OA", "AA")
ENROL_FRACTION = 0.25
MAX_ENROL = 10
MAX_NONTARGET_MODELS = 50  # per trial utterance, so huge corpora stay O(N)
NEEDS_SPEAKERS = "needs at least 2 speakers with 2 or more utterances each, one to enrol and one to test"


@dataclass
class TrialList:
    """ASV trials: enrolment models (utterance indices per model), each model's speaker, and (model, utterance, is target) trials."""

    models: dict[str, np.ndarray]  # model id -> indices of its enrolment utterances
    model_speaker: dict[str, str]  # model id -> speaker
    trials: list[tuple[str, int, bool]]  # (model id, trial utterance index, is target)


def split_enrolment(speakers: list[str | None], valid: np.ndarray, seed: int) -> TrialList:
    """Per speaker (≥ 2 utterances): a seeded enrolment subset, the rest are trial utterances.

    Every trial utterance is scored against its own speaker's model (target) and
    against up to MAX_NONTARGET_MODELS other speakers' models (non-target).
    """
    by_speaker: dict[str, list[int]] = {}
    for index, (spk, good) in enumerate(zip(speakers, valid)):
        if spk is not None and good:
            by_speaker.setdefault(spk, []).append(index)
    models, tests = {}, {}
    for spk in sorted(by_speaker):
        indices = np.array(by_speaker[spk])
        if len(indices) < 2:
            continue
        rng = np.random.default_rng(derive_seed(seed, f"asv-enrol:{spk}"))
        order = rng.permutation(indices)
        n_enrol = int(min(MAX_ENROL, max(1, round(ENROL_FRACTION * len(indices)))))
        models[spk] = np.sort(order[:n_enrol])
        tests[spk] = np.sort(order[n_enrol:])
    if len(models) < 2:
        raise InputError(
            f"asv probe {NEEDS_SPEAKERS}; {len(models)} of the {len(by_speaker)} speakers of the "
            "decoded pairs have that many"
        )
    names = sorted(models)
    trials = []
    for spk in names:
        others = [m for m in names if m != spk]
        rng = np.random.default_rng(derive_seed(seed, f"asv-nontarget:{spk}"))
        for index in tests[spk]:
            trials.append((spk, int(index), True))
            picked = (
                others
                if len(others) <= MAX_NONTARGET_MODELS
                else list(rng.choice(others, MAX_NONTARGET_MODELS, replace=False))
            )
            trials.extend((m, int(index), False) for m in picked)
    return TrialList(models, {m: m for m in models}, trials)


def read_kaldi_trials(path: Path, utt_ids: list[str], speakers: list[str | None]) -> TrialList:
    """A Kaldi/VoicePrivacy `trials` file: `MODEL UTT target|nontarget` per line.

    MODEL is a speaker id (enrolled with that speaker's utterances that are
    never a trial) or an utterance id (enrolled with that single utterance).
    """
    index_of = {u: i for i, u in enumerate(utt_ids)}
    # Also accept ids without their folder part ("03a01Fa" for "wav/03a01Fa").
    for i, u in enumerate(utt_ids):
        index_of.setdefault(u.rsplit("/", 1)[-1], i)
    rows = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise InputError(f"{path}: cannot read trials file ({err.strerror or err})") from None
    for number, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or parts[2] not in ("target", "nontarget"):
            raise InputError(f"{path}: line {number}: expected 'MODEL UTT target|nontarget'")
        if parts[1] not in index_of:
            raise InputError(f"{path}: line {number}: unknown utterance {parts[1]!r}")
        rows.append((parts[0], index_of[parts[1]], parts[2] == "target"))
    tested = {i for _, i, _ in rows}
    models, model_speaker = {}, {}
    for model in sorted({m for m, _, _ in rows}):
        if model in index_of:
            models[model] = np.array([index_of[model]])
            model_speaker[model] = speakers[index_of[model]] or model
        else:
            enrol = [i for i, s in enumerate(speakers) if s == model and i not in tested]
            if not enrol:
                raise InputError(
                    f"{path}: model {model!r} is neither an utterance nor a speaker with non-trial utterances"
                )
            models[model] = np.array(enrol)
            model_speaker[model] = model
    return TrialList(models, model_speaker, rows)


def _model_vectors(models: dict[str, np.ndarray], embeddings: np.ndarray) -> dict[str, np.ndarray]:
    vectors = {}
    for name, indices in models.items():
        mean = embeddings[indices].mean(axis=0)
        vectors[name] = mean / max(np.linalg.norm(mean), 1e-12)
    return vectors


def score_trials(trial_list: TrialList, enrol_embeddings: np.ndarray, test_embeddings: np.ndarray) -> np.ndarray:
    """Cosine score of each trial: (T,) float64 dot products of the L2-normalised mean enrolment embedding and the test embedding.

    `enrol_embeddings` and `test_embeddings` are (N, D) L2-normalised arrays indexed like the trial list.
    """
    vectors = _model_vectors(trial_list.models, enrol_embeddings)
    names = sorted(vectors)
    row_of = {name: k for k, name in enumerate(names)}
    matrix = np.stack([vectors[name] for name in names])
    rows = np.array([row_of[m] for m, _, _ in trial_list.trials])
    cols = np.array([i for _, i, _ in trial_list.trials])
    return np.einsum("ij,ij->i", matrix[rows], test_embeddings[cols]).astype(np.float64)


def run_asv(
    trial_list: TrialList,
    original: np.ndarray,
    anonymized: np.ndarray,
    speakers: list[str | None],
    utt_ids: list[str],
    conditions=CONDITIONS,
    n_boot: int = 200,
    seed: int = 0,
):
    """Return (summary, trial columns for trials.parquet, per-utterance columns, per-speaker EERs)."""
    sides = {"O": original, "A": anonymized}
    is_target = np.array([t for _, _, t in trial_list.trials])
    test_index = np.array([i for _, i, _ in trial_list.trials])
    model_ids = [m for m, _, _ in trial_list.trials]
    test_speaker = np.array([speakers[i] or "" for i in test_index])
    summary, per_utt, per_speaker = {}, {}, {}
    # Columns of trials.parquet, built as arrays: millions of trials stay cheap.
    utt_id_array = np.asarray(utt_ids, dtype=object)
    model_array = np.asarray(model_ids, dtype=object)
    columns = {"condition": [], "model": [], "utt_id": [], "target": [], "score": []}
    for cond in conditions:
        scores = score_trials(trial_list, sides[cond[0]], sides[cond[1]])
        eer, dcf, threshold = metrics.eer_minDCF(scores[is_target], scores[~is_target])

        def boot(indices, scores=scores):
            """EER (%) of the trials whose test utterances are `indices` (one bootstrap resample)."""
            return metrics.fast_eer(scores[indices][is_target[indices]], scores[indices][~is_target[indices]])

        low, high = metrics.bootstrap_ci(boot, test_speaker, n_boot=n_boot, seed=seed)
        summary[cond] = {
            "EER": eer,
            "eer": metrics.normalised_eer(eer),
            "minDCF": dcf,
            "threshold": threshold,
            "EER_ci": [low, high],
            "n_target": int(is_target.sum()),
            "n_nontarget": int((~is_target).sum()),
        }
        columns["condition"].append(np.full(len(scores), cond, dtype=object))
        columns["model"].append(model_array)
        columns["utt_id"].append(utt_id_array[test_index])
        columns["target"].append(is_target)
        columns["score"].append(scores)
        column = np.full(len(utt_ids), np.nan)
        column[test_index[is_target]] = scores[is_target]
        per_utt[f"asv.{cond}.score"] = column
        per_speaker[cond] = {}
        model_speaker = np.array([trial_list.model_speaker[m] for m in model_ids])
        for spk in sorted(set(trial_list.model_speaker.values())):
            own = is_target & (test_speaker == spk)
            against = ~is_target & (model_speaker == spk)
            if own.any() and against.any():
                per_speaker[cond][spk] = metrics.fast_eer(scores[own], scores[against])
    trials = {k: np.concatenate(v) for k, v in columns.items()}
    return summary, trials, per_utt, per_speaker


ROLES = {
    "OO": "enrolled on original audio, tested on original audio (the verifier itself)",
    "OA": "ignorant: enrolled on original audio, tested on anonymized audio",
    "AA": "lazy-informed: enrolled on anonymized audio, tested on anonymized audio",
}


def asv_protocol(backend: str, trials: str) -> dict:
    """How the ASV attacker was built: a pretrained encoder (nothing trained on this data), its trials, its audio."""
    family = (
        f"{backend} speaker encoder (pretrained; nothing trained on this data), cosine to the L2-normalised "
        "mean enrolment embedding"
    )
    return {
        "family": family,
        "trained_on": None,
        "training": f"not trained here; trials: {trials}",
        "trials": trials,
        "attackers": dict(ROLES),
        "text": f"asv: {family}; trials: {trials}; OA {ROLES['OA'].split(': ', 1)[1]}; "
        f"AA {ROLES['AA'].split(': ', 1)[1]}",
    }


class AsvProbe(Probe):
    """summary.json `asv`: per condition (OO, OA, AA) EER, eer, minDCF, threshold, EER_ci, n_target,
    n_nontarget; plus backend and trials. scores.parquet `asv.<condition>.score`; trials.parquet.
    Gate alias: `asv.<figure>` is the ignorant attacker's `asv.OA.<figure>`."""

    kind = "asv"
    needs = frozenset({"pairs", "embeddings"})
    table_rank = 10
    gate_aliases = {"asv": "asv.OA"}

    @classmethod
    def available(cls, ctx: ProbeContext) -> tuple[list[Probe], list[str]]:
        speakers = [s for s in ctx.speakers if s is not None]
        if len(set(speakers)) < 2:
            return [], ["asv: not probed (needs a speaker label with 2 or more speakers)"]
        if not ctx.config.trials:  # the seeded split enrols and tests each speaker on different utterances
            counts = Counter(speakers)
            if sum(n >= 2 for n in counts.values()) < 2:
                return [], [
                    f"asv: not probed ({NEEDS_SPEAKERS}; {sum(n >= 2 for n in counts.values())} of the "
                    f"{len(counts)} speakers have that many)"
                ]
        return [cls()], []

    def expected(self) -> dict:
        figures = ("EER", "eer", "minDCF", "threshold", "n_target", "n_nontarget")
        return {c: dict.fromkeys(figures, float("nan")) for c in CONDITIONS}

    def run(self, ctx: ProbeContext) -> ProbeResult:
        config, data = ctx.config, ctx.data
        if config.trials:
            trial_list = read_kaldi_trials(Path(config.trials), ctx.utt_ids, ctx.speakers)
        else:
            try:
                # a silent or too short pair has an embedding that says nothing of its speaker (as link.cosine)
                usable = ctx.valid & np.array(["link.cosine" not in notes for notes in data.notes], dtype=bool)
                trial_list = split_enrolment(ctx.speakers, usable, config.seed)
            except InputError as err:  # the labels allowed it, but too many pairs could not be decoded
                return ProbeResult(None, notes=[f"asv: not probed ({err})"])
        summary, trials, columns, per_speaker = run_asv(
            trial_list,
            data.original.embeddings,
            data.anonymized.embeddings,
            ctx.speakers,
            ctx.utt_ids,
            n_boot=config.n_boot,
            seed=config.seed,
        )
        summary["backend"] = ctx.backend_name
        summary["trials"] = (
            "kaldi file " + str(config.trials)
            if config.trials
            else (f"seeded split: {ENROL_FRACTION:.0%} of each speaker's utterances (1..{MAX_ENROL}) enrol")
        )
        is_target, conds, scores = trials["target"], trials["condition"], trials["score"]
        trial_scores = {c: (scores[(conds == c) & is_target], scores[(conds == c) & ~is_target]) for c in CONDITIONS}
        return ProbeResult(
            summary,
            columns,
            trials=trials,
            plots={"trial_scores": trial_scores, "per_speaker": per_speaker},
            protocol=asv_protocol(ctx.backend_name, summary["trials"]),
        )

    @classmethod
    def table_rows(cls, key: str, entry: dict) -> list[Row]:
        def get(condition, figure):
            """`entry[condition][figure]`, or None."""
            return entry.get(condition, {}).get(figure)

        return [
            (
                f"ASV EER % ({entry.get('backend', '')})",
                *(fmt(get(c, "EER")) + fmt_ci(entry.get(c, {}), "EER") for c in CONDITIONS),
            ),
            ("ASV eer (normalised, 100 = private)", *(fmt(get(c, "eer")) for c in CONDITIONS)),
            ("ASV minDCF", *(fmt(get(c, "minDCF"), 3) for c in CONDITIONS)),
        ]
