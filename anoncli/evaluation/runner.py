"""The probe pipeline behind `anoncli evaluate`: pair, extract once, run the probes, write the report."""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from anoncli.errors import EXIT_GATE, EXIT_OK, AnoncliError
from anoncli.evaluation import gate as gate_mod
from anoncli.evaluation import report
from anoncli.scoring import metrics

TRANSCRIPT_COLUMNS = ("transcript", "text")


@dataclass
class EvaluateConfig:
    original: Path
    anonymized: Path
    out: Path
    labels_file: Path | None = None
    layout: str = "auto"
    probes: list[str] | None = None
    asv_model: str | None = None
    trials: Path | None = None
    vocabulary: str | None = None
    asr_model: str | None = None
    asr_language: str = "en"
    seed: int = 0
    overwrite: bool = False
    gate: str | None = None
    use_cache: bool = True
    n_boot: int = 200
    progress: bool = True
    print_table: bool = True
    # feature extraction on parallel workers: local processes or a Dask cluster (anoncli.parallel)
    jobs: int = 1
    backend: str = "local"
    scheduler: str | None = None
    allow_commands: bool = False


@dataclass
class EvaluateResult:
    summary: dict
    exit_code: int
    failed: list = field(default_factory=list)


def _log(message: str, progress: bool) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise AnoncliError(f"{out}: already exists and is not empty (use --overwrite to replace the report)")
        if out.is_dir() and not report.is_report_like(out):
            raise AnoncliError(f"{out}: --overwrite refuses to delete a folder that is not an anoncli report")
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    out.mkdir(parents=True, exist_ok=True)


def available_probes(label_rows, speakers, columns) -> tuple[list[str], dict, list[str]]:
    from anoncli.evaluation.attribute import candidate_columns

    probes = ["signal"]
    n_speakers = len({s for s in speakers if s is not None})
    if n_speakers >= 2:
        probes += ["asv"]
    probes += ["linkability"]
    if any(c in columns for c in TRANSCRIPT_COLUMNS):
        probes.append("asr")
    specs, notes = candidate_columns(label_rows, speakers, columns)
    if n_speakers < 2:
        notes.append("asv: not probed (needs a speaker label with 2 or more speakers)")
    return probes + [s.column for s in specs], {s.column: s for s in specs}, notes


def select_probes(requested: list[str] | None, available: list[str], all_names: list[str]) -> list[str]:
    if not requested:
        return available
    unknown = [p for p in requested if p not in available]
    if unknown:
        raise AnoncliError(f"--probes: {', '.join(unknown)} not available for these labels (available: {', '.join(available)})")
    return [p for p in available if p in requested]


def _signal_summary(signal: dict[str, np.ndarray], speakers: np.ndarray, n_boot: int, seed: int,
                    valid: np.ndarray | None = None) -> dict:
    """Mean, median and bootstrap CI of each signal score over the pairs where it is a number;
    `{key}_missing` counts the decoded (`valid`) pairs where it is NaN (see the score_notes column)."""
    summary = {}
    for key, values in signal.items():
        finite = np.isfinite(values)
        summary[f"{key}_missing"] = int(np.count_nonzero((valid if valid is not None else True) & ~finite))
        if not finite.any():
            continue
        summary[key] = float(np.mean(values[finite]))
        summary[f"{key}_median"] = float(np.median(values[finite]))
        ci = metrics.bootstrap_ci(lambda ix, v=values, f=finite: float(np.mean(v[ix][f[ix]])) if f[ix].any() else None,
                                  speakers, n_boot=n_boot, seed=seed)
        summary[f"{key}_ci"] = list(ci)
    return summary


def _methods_with_feature_probes(names: list[str]) -> bool:
    """Methods whose audio output also has representation-level probes (RDAL-M: speech presence, SDR)."""
    from anoncli.methods import REGISTRY, method_class

    return any(name in REGISTRY and method_class(name).has_feature_probes for name in names)


def _feature_hook(config: EvaluateConfig, pairing, notes: list[str]) -> dict | None:
    """Representation-level probes (feature vectors, or a method that declares them) by feature_probes."""
    from anoncli.evaluation.feature_probes import evaluate_features

    try:
        rows, summary = evaluate_features(config.original, config.anonymized, pairing.manifest_table, seed=config.seed)
    except NotImplementedError as err:
        notes.append(f"features: not evaluated ({err})")
        return None
    return {"rows": rows, "summary": summary}


def _binary_roc_inputs(classes: list[str], labels: list[str | None], columns: dict) -> dict:
    """Per attacker: (is the second class, posterior of the second class) over the scored utterances."""
    positive = np.array([label == classes[1] for label in labels])
    result = {}
    for attacker in ("original", "ignorant", "informed"):
        key = next((k for k in columns if k.endswith(f".{attacker}.p_true")), None)
        if key is None:
            continue
        p_true = np.asarray(columns[key], dtype=float)
        scored = np.isfinite(p_true)
        score = np.where(positive, p_true, 1.0 - p_true)
        result[attacker] = (positive[scored], score[scored])
    return result


def evaluate(config: EvaluateConfig) -> EvaluateResult:
    import torch

    from anoncli import __version__
    from anoncli.corpus import open_corpus
    from anoncli.evaluation.pairing import pair_corpus

    started = time.time()
    torch.set_num_threads(1)  # small models: intra-op threads cost more than they give (see embeddings.py)
    if config.gate:
        gate_mod.check_syntax(config.gate)
    out = Path(config.out)
    if out.resolve() in (Path(config.original).resolve(), Path(config.anonymized).resolve()):
        raise AnoncliError(f"--out {out}: must not be the original or the anonymized folder")
    corpus = open_corpus(config.original, config.labels_file, config.layout, allow_commands=config.allow_commands)
    pairing = pair_corpus(corpus, config.anonymized)
    notes = list(pairing.notes)
    utts = [u for u, _ in pairing.pairs]
    speakers = [u.speaker for u in utts]
    label_rows = [u.labels for u in utts]
    available, specs, label_notes = available_probes(label_rows, speakers, corpus.label_columns)
    probes = select_probes(config.probes, available, corpus.label_columns)
    if not config.probes:
        notes.extend(label_notes)
    expected = gate_mod.expected_summary(probes, {c: len(specs[c].classes) for c in probes if c in specs})
    if config.gate:  # unknown figure names fail now, before minutes of work
        gate_mod.parse_gate(config.gate, expected, deferred=("features.",) if pairing.feature_outputs else ())
    prepare_out(out, config.overwrite)
    timings: dict[str, float] = {}
    _log(f"evaluate: {len(pairing.pairs)} pairs ({pairing.source}); probes: {', '.join(probes)}", config.progress)

    summary: dict = {"meta": {
        "original": str(Path(config.original).resolve()), "anonymized": str(Path(config.anonymized).resolve()),
        "pairing": pairing.source, "methods": pairing.methods, "n_pairs": len(pairing.pairs),
        "probes": probes, "seed": config.seed, "anoncli_version": __version__,
    }}
    per_utt: dict[str, np.ndarray] = {}
    trial_columns: dict = {k: [] for k in ("condition", "model", "utt_id", "target", "score")}
    trial_scores, per_speaker, confusions, roc_inputs = {}, {}, {}, {}
    feature_result = None
    if pairing.feature_outputs or _methods_with_feature_probes(pairing.methods):
        feature_result = _feature_hook(config, pairing, notes)
        if feature_result:
            summary["features"] = feature_result["summary"]

    if utts:
        from anoncli.evaluation.extraction import build_backends, extract

        attr_columns = [p for p in probes if p in specs]
        need_embed = bool({"asv", "linkability"} & set(probes)) or bool(attr_columns)
        t0 = time.time()
        backend, attacker_backend = build_backends(config.asv_model, need_embed, bool(attr_columns))
        extract_args = dict(need_signal="signal" in probes or bool(attr_columns), need_attr=bool(attr_columns),
                            use_cache=config.use_cache, corpus_root=corpus.root, progress=config.progress)
        if config.jobs > 1 or config.backend != "local":
            from anoncli.parallel import make_executor

            with make_executor(config.backend, config.jobs, "cpu", config.scheduler) as executor:
                data = extract(pairing.pairs, backend, attacker_backend, executor=executor,
                               backend_spec=(config.asv_model, need_embed), **extract_args)
        else:
            data = extract(pairing.pairs, backend, attacker_backend, **extract_args)
        timings["extract"] = time.time() - t0
        timings.update({f"extract.{k}": v for k, v in data.timings.items()})
        notes.extend(data.errors)
        valid = data.ok
        spk_array = np.array([s or "" for s in speakers])
        utt_ids = [u.utt_id for u in utts]
        per_utt["duration_s"] = data.original.durations
        per_utt["anonymized_duration_s"] = data.anonymized.durations

        if "signal" in probes:
            t0 = time.time()
            summary["signal"] = _signal_summary(data.signal, spk_array, config.n_boot, config.seed, valid)
            for key, values in data.signal.items():
                per_utt[f"signal.{key}"] = values
            timings["signal"] = time.time() - t0
        if "linkability" in probes:
            from anoncli.evaluation.linkability import run_linkability

            t0 = time.time()
            # a silent or too short pair has an embedding, but its cosine says nothing: NaN, noted
            scoreable = valid & np.array(["link.cosine" not in pair_notes for pair_notes in data.notes], dtype=bool)
            link_summary, columns, _ = run_linkability(data.original.embeddings, data.anonymized.embeddings, speakers,
                                                       scoreable)
            link_summary["backend"] = backend.name
            link_summary["cosine_missing"] = int(np.count_nonzero(valid & ~scoreable))
            summary["linkability"] = link_summary
            per_utt.update(columns)
            timings["linkability"] = time.time() - t0
        per_utt["score_notes"] = ["; ".join(f"{column}: {why}" for column, why in pair_notes.items() if column in per_utt)
                                  or None for pair_notes in data.notes]
        if "asv" in probes:
            from anoncli.evaluation import asv

            t0 = time.time()
            if config.trials:
                trial_list = asv.read_kaldi_trials(Path(config.trials), utt_ids, speakers)
            else:
                trial_list = asv.split_enrolment(speakers, valid, config.seed)
            asv_summary, trial_columns, columns, per_speaker = asv.run_asv(
                trial_list, data.original.embeddings, data.anonymized.embeddings, speakers, utt_ids,
                n_boot=config.n_boot, seed=config.seed)
            asv_summary["backend"] = backend.name
            asv_summary["trials"] = "kaldi file " + str(config.trials) if config.trials else (
                f"seeded split: {asv.ENROL_FRACTION:.0%} of each speaker's utterances (1..{asv.MAX_ENROL}) enrol")
            summary["asv"] = asv_summary
            per_utt.update(columns)
            is_target, conds, scores = trial_columns["target"], trial_columns["condition"], trial_columns["score"]
            trial_scores = {c: (scores[(conds == c) & is_target], scores[(conds == c) & ~is_target]) for c in asv.CONDITIONS}
            timings["asv"] = time.time() - t0
        for column in attr_columns:
            from anoncli.evaluation.attribute import run_attribute

            t0 = time.time()
            attr_summary, columns, confusion = run_attribute(
                specs[column], [row.get(column) for row in label_rows], speakers, data.original.features,
                data.anonymized.features, valid, seed=config.seed, n_boot=config.n_boot)
            summary[column] = attr_summary
            per_utt.update(columns)
            confusions[column] = confusion
            if len(specs[column].classes) == 2:
                roc_inputs[column] = _binary_roc_inputs(specs[column].classes, [row.get(column) for row in label_rows], columns)
            timings[f"attribute.{column}"] = time.time() - t0
        if "asr" in probes:
            from anoncli.evaluation.asr import run_asr

            t0 = time.time()
            text_column = next(c for c in TRANSCRIPT_COLUMNS if c in corpus.label_columns)
            asr_summary, columns, asr_notes = run_asr(
                pairing.pairs, [row.get(text_column) for row in label_rows], [row.get("language") for row in label_rows],
                valid, config.asr_model, config.vocabulary, config.asr_language, progress=config.progress)
            notes.extend(asr_notes)
            if asr_summary:
                summary["asr"] = asr_summary
                per_utt.update(columns)
            timings["asr"] = time.time() - t0

    t0 = time.time()
    summary["notes"] = notes
    columns = {"utt_id": [u.utt_id for u in utts], "source_path": [u.rel_path for u in utts],
               "anonymized_path": [str(p) for _, p in pairing.pairs]}
    for name in corpus.label_columns:
        columns[name] = [row.get(name) for row in label_rows]
    columns.update(per_utt)
    report.write_table(out / report.SCORES_NAME, columns)
    report.write_table(out / report.TRIALS_NAME, trial_columns)
    if feature_result and feature_result.get("rows"):
        import pandas as pd

        pd.DataFrame(feature_result["rows"]).to_parquet(out / "feature_scores.parquet", index=False)
    plots = report.make_plots(summary, trial_scores, per_speaker, confusions, roc_inputs)
    timings["report"] = time.time() - t0
    timings["total"] = time.time() - started
    summary["timings_s"] = timings
    report.write_html(out, summary, plots)
    report.write_summary(out, summary)
    if config.print_table:
        report.print_table(summary)

    exit_code, failed = EXIT_OK, []
    if config.gate:
        conditions = gate_mod.parse_gate(config.gate, summary, expected)
        failed = gate_mod.check_gate(conditions, summary)
        for cond, value in failed:
            shown = "not measured" if not np.isfinite(value) else f"{value:.4g}"
            alias = f" ({cond.resolved})" if cond.resolved != cond.name else ""
            print(f"anoncli: gate failed: {cond.text}{alias}: measured {shown}", file=sys.stderr)
        if failed:
            exit_code = EXIT_GATE
        else:
            _log(f"gate passed: {len(conditions)} condition(s)", config.progress)
    return EvaluateResult(summary, exit_code, failed)
