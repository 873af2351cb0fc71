"""The per-utterance scores of an anonymize job: planned once by the engine, computed batch by batch by workers.

`plan_scores` (engine, once) picks the shipped attacker of each labelled
attribute for this corpus and each speaker's ASV enrolment utterances, and
collects the notes run.json shows. In each worker, `prepare` describes the
batch's originals before the method runs (from the corpus cache when a
previous run or method already did), and `finish` describes the outputs in
one batched encoder call, enrols each speaker, and writes the score columns
into the manifest rows (`anoncli.scoring.quick_scores` defines them).

ASV enrolment: the first `ENROL_UTTERANCES` + 1 utterances of a speaker
(by utterance id, over the whole corpus, whatever the shard) form its
enrolment pool; an utterance is scored against the mean embedding of the
pool without itself (at most `ENROL_UTTERANCES`). The pool is the same for
every batch, shard and rerun, so asv_score does not depend on batching, and
its originals are described once and cached.
"""

from __future__ import annotations

import json
import threading
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anoncli.corpus import Corpus
from anoncli.corpus.utterance import Utterance
from anoncli.manifest.schema import SCORE_ATTRIBUTES

ENROL_UTTERANCES = 10
ATTACKERS_FOLDER = Path(__file__).resolve().parent.parent / "pretrained" / "attackers"
ATTACKERS_CARD = "card.json"


def load_attackers(folder: Path | None = None) -> tuple[list, dict]:
    """The shipped attackers (`anoncli.scoring.attackers.Attacker`) and their card; ([], {}) when none are shipped."""
    from anoncli.models.safetensors_io import load_file
    from anoncli.scoring.attackers import Attacker

    folder = Path(folder or ATTACKERS_FOLDER)
    card_path = folder / ATTACKERS_CARD
    if not card_path.is_file():
        return [], {}
    card = json.loads(card_path.read_text(encoding="utf-8"))
    attackers = []
    for entry in card.get("attackers", []):
        tensors, _ = load_file(folder / entry["file"])
        arrays = {name: tensors[name].numpy() for name in ("mean", "scale", "weight", "bias")}
        info = {k: v for k, v in entry.items() if k not in ("classes",)}
        attackers.append(Attacker(entry["name"], entry["attribute"], list(entry["classes"]), info=info, **arrays))
    return attackers, card


@dataclass
class ScorePlan:
    """What every worker needs to score a job's utterances the same way (small, picklable)."""

    corpus_root: str
    channel: int | None
    device: str
    attributes: list[str]  # attributes every row is scored for (p_orig / p_anon columns)
    attackers: dict[str, str]  # attribute -> shipped attacker name
    enrolment: dict[str, list[Utterance]] | None  # speaker -> enrolment pool; None: no speaker labels
    notes: list[str] = field(default_factory=list)
    use_cache: bool = True

    def record(self) -> dict[str, Any]:
        """The run.json `scores` entry, before the distributions are added."""
        return {
            "enabled": True,
            "attackers": dict(self.attackers),
            "attributes": list(self.attributes),
            "asv_enrolment": (
                f"first {ENROL_UTTERANCES + 1} utterances of each speaker (by utterance id), the scored one left out"
            )
            if self.enrolment is not None
            else None,
            "notes": list(self.notes),
        }


def plan_scores(
    corpus: Corpus, todo: list[Utterance], channel: int | None = None, device: str = "cpu", use_cache: bool = True
) -> ScorePlan:
    """Choose the attackers and the enrolment pools for scoring `todo` (utterances of `corpus`)."""
    from anoncli.scoring.attackers import choose

    attackers, _card = load_attackers()
    notes: list[str] = []
    if not attackers:
        notes.append(f"no shipped attackers in {ATTACKERS_FOLDER}; the _p_orig/_p_anon columns are not scored")
    columns = set(corpus.label_columns)
    languages = Counter(u.labels.get("language") for u in corpus.utterances if u.labels.get("language"))
    language = languages.most_common(1)[0][0].strip().lower() if languages else None
    attributes, chosen = [], {}
    for attribute in SCORE_ATTRIBUTES:
        # gender is scored on every corpus (NaN, "no label", where it is not labelled); other attributes where labelled
        if attribute not in columns and attribute != "gender":
            continue
        attributes.append(attribute)
        choice = choose(attribute, [u.labels.get(attribute) for u in corpus.utterances], attackers, language)
        if choice.attacker:
            chosen[attribute] = choice.attacker
        if choice.note and attribute in columns:
            notes.append(choice.note)
        elif attribute not in columns:
            notes.append(
                f"{attribute}: the corpus has no {attribute} label; {attribute}_p_orig/_p_anon are NaN (no label)"
            )
    unscored = sorted(columns - set(SCORE_ATTRIBUTES) - {"speaker", "transcript", "text", "language"})
    if unscored:
        notes.append(f"labels without a shipped attacker (not scored): {', '.join(unscored)}")
    enrolment = None
    if any(u.speaker for u in corpus.utterances):
        by_speaker: dict[str, list[Utterance]] = {}
        for utt in sorted(corpus.utterances, key=lambda u: u.utt_id):
            if utt.speaker:
                by_speaker.setdefault(utt.speaker, []).append(utt)
        wanted = {u.speaker for u in todo if u.speaker}
        enrolment = {s: pool[: ENROL_UTTERANCES + 1] for s, pool in by_speaker.items() if s in wanted}
        single = sorted(s for s, pool in enrolment.items() if len(pool) < 2)
        if single:
            notes.append(
                f"asv_score: {len(single)} speaker(s) with one utterance cannot be enrolled "
                f"(e.g. {', '.join(single[:5])})"
            )
    else:
        notes.append("asv_score: the corpus has no speaker labels; not scored (no speaker label)")
    return ScorePlan(str(Path(corpus.root).resolve()), channel, device, attributes, chosen, enrolment, notes, use_cache)


# ---- worker side -------------------------------------------------------------------------------------------

_STATE: dict[str, Any] = {}
_STATE_LOCK = threading.Lock()  # a GPU job runs batches on several threads of one process (anoncli.parallel.prefetch)


def _scorer(plan: ScorePlan):
    """This process's QuickScorer with the plan's attackers (built once per device and attacker choice)."""
    from anoncli.scoring.quick_scores import QuickScorer

    key = json.dumps([plan.device, plan.attackers], sort_keys=True)
    with _STATE_LOCK:
        if _STATE.get("scorer_key") != key:
            if "attackers" not in _STATE:
                _STATE["attackers"] = load_attackers()[0]
            by_name = {a.name: a for a in _STATE["attackers"]}
            _STATE["scorer"] = QuickScorer(plan.device, {attr: by_name[name] for attr, name in plan.attackers.items()})
            _STATE["scorer_key"] = key
        return _STATE["scorer"]


def original_cache(plan: ScorePlan):
    """This process's cache of the corpus's originals' sides."""
    from anoncli.scoring.original_cache import OriginalCache

    key = (plan.corpus_root, plan.use_cache)
    with _STATE_LOCK:
        if _STATE.get("cache_key") != key:
            _STATE["cache"] = OriginalCache(plan.corpus_root, enabled=plan.use_cache)
            _STATE["cache_key"] = key
        return _STATE["cache"]


def _key(utt: Utterance, channel: int | None) -> str | None:
    from anoncli.scoring.original_cache import file_key

    return None if utt.command is not None else file_key(utt.path, channel)


@dataclass
class Prepared:
    """A batch's originals at 16 kHz and their sides (utt_id -> ...)."""

    waves: dict[str, np.ndarray]
    sides: dict[str, Any]
    error: str | None = None  # why the batch could not be scored (every row then says so in score_notes)


def _failure(err: BaseException) -> str:
    """One line for a scoring failure: its type and message."""
    return traceback.format_exception_only(type(err), err)[-1].strip()


def prepare(plan: ScorePlan, batch: list[tuple[Utterance, Any, int]]) -> Prepared:
    """Describe the originals of a batch ((utterance, mono samples as numpy or torch, their rate)) before the
    method runs.

    Sides come from the corpus cache when present; the others are computed in
    one batched call and cached at once, so a worker busy with another batch
    of the same speaker finds them for its enrolment.
    """
    from anoncli.scoring.quick_scores import to_16k

    waves, sides, todo = {}, {}, []
    try:
        cache = original_cache(plan)
        for utt, samples, rate in batch:
            waves[utt.utt_id] = to_16k(samples, rate)
            side = cache.get(_key(utt, plan.channel))
            if side is None:
                todo.append(utt)
            else:
                sides[utt.utt_id] = side
        if todo:
            for utt, side in zip(todo, _scorer(plan).describe([waves[u.utt_id] for u in todo])):
                sides[utt.utt_id] = side
                cache.put(_key(utt, plan.channel), side)
    except Exception as err:  # scores must never cost the anonymized files: the rows say why they have none
        return Prepared({}, {}, _failure(err))
    return Prepared(waves, sides)


def _enrolment_sides(plan: ScorePlan, prepared: Prepared, speakers: set[str]) -> dict[str, Any]:
    """utt_id -> side (None if unreadable) of every enrolment utterance of `speakers`, describing the missing ones."""
    from anoncli.corpus.reading import read_utterance_audio
    from anoncli.scoring.quick_scores import to_16k

    cache = original_cache(plan)
    found: dict[str, Any] = {}
    missing: list[tuple[Utterance, np.ndarray]] = []
    for speaker in sorted(speakers):
        for utt in (plan.enrolment or {}).get(speaker, []):
            if utt.utt_id in found or any(utt is m[0] for m in missing):
                continue
            side = prepared.sides.get(utt.utt_id) or cache.get(_key(utt, plan.channel))
            if side is not None:
                found[utt.utt_id] = side
                continue
            try:
                audio = read_utterance_audio(utt, plan.channel)
            except Exception:  # an unreadable enrolment file fails in its own row; here it is left out
                found[utt.utt_id] = None
                continue
            missing.append((utt, to_16k(audio.samples, audio.sample_rate)))
    if missing:
        for (utt, _), side in zip(missing, _scorer(plan).describe([w for _, w in missing])):
            found[utt.utt_id] = side
            cache.put(_key(utt, plan.channel), side)
    return found


def finish(
    plan: ScorePlan, prepared: Prepared, written: list[tuple[Utterance, dict, np.ndarray | None, int | None]]
) -> list[str]:
    """Add the score columns to the rows of a batch's written outputs; returns warning lines.

    written: (utterance, its manifest row (updated in place), output wave or
    None for a features-only output, the wave's sample rate).
    """
    from anoncli.scoring.attackers import normalise_label
    from anoncli.scoring.quick_scores import NO_SPEAKER, enrolment_centre, row_values, to_16k

    if not written:
        return []
    try:
        if prepared.error:
            raise RuntimeError(prepared.error)
        scorer = _scorer(plan)
        outputs = {utt.utt_id: to_16k(wave, rate) for utt, _, wave, rate in written if wave is not None}
        out_ids = list(outputs)
        out_sides = dict(zip(out_ids, scorer.describe([outputs[i] for i in out_ids]))) if out_ids else {}
        pools = {}
        if plan.enrolment is not None:
            pools = _enrolment_sides(plan, prepared, {utt.speaker for utt, *_ in written if utt.speaker})
    except Exception as err:
        why = prepared.error or _failure(err)
        for _utt, row, _, _ in written:
            row["score_notes"] = f"scores: not computed ({why})"
        return [f"scores not computed for a batch of {len(written)} file(s): {why}"]
    warnings = []
    for utt, row, _, _ in written:
        try:
            if plan.enrolment is None or not utt.speaker:
                enrol: np.ndarray | str = NO_SPEAKER
            else:
                others = [u for u in plan.enrolment.get(utt.speaker, []) if u.utt_id != utt.utt_id]
                enrol = enrolment_centre([pools.get(u.utt_id) for u in others[:ENROL_UTTERANCES]])
            labels = {a: normalise_label(a, utt.labels.get(a)) for a in plan.attributes}
            scores = scorer.score_pair(
                prepared.waves[utt.utt_id],
                prepared.sides[utt.utt_id],
                outputs.get(utt.utt_id),
                out_sides.get(utt.utt_id),
                enrol,
                labels,
            )
            row.update(row_values(scores))
        except Exception as err:  # a scoring bug must not lose the anonymized file: noted, reported
            row["score_notes"] = f"scores: not computed ({_failure(err)})"
            warnings.append(f"{utt.rel_path}: scores not computed: {_failure(err)}")
    return warnings


def scores_record(out: Path, plan: ScorePlan, utt_ids: list[str]) -> dict[str, Any]:
    """run.json's `scores`: the plan's attackers and notes, and the distribution of every score column over
    the ok rows of `utt_ids` in OUT (`anoncli.manifest.summary.score_distributions`)."""
    from anoncli.manifest.reader import read_manifest
    from anoncli.manifest.summary import score_distributions

    record = plan.record()
    attackers, card = load_attackers()
    info = {a.name: a.info for a in attackers}
    record["attackers"] = {
        attribute: {"attacker": name, **{k: v for k, v in info.get(name, {}).items() if k not in ("file", "name")}}
        for attribute, name in plan.attackers.items()
    }
    if card:
        record["attackers_card"] = str(ATTACKERS_FOLDER / ATTACKERS_CARD)
    from anoncli.errors import InputError

    try:
        table = read_manifest(out)
    except InputError:  # no rows written (nothing to do): no distributions
        table = None
    record["distributions"] = score_distributions(table, set(utt_ids)) if table is not None else {}
    return record
