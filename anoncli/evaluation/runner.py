"""The probe pipeline behind `anoncli evaluate`: pair, extract once, run the probes, write the report."""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from anoncli.errors import EXIT_GATE, EXIT_OK, AnoncliError, InputError, warn
from anoncli.evaluation import gate as gate_mod
from anoncli.evaluation import report
from anoncli.evaluation.probes import Probe, ProbeContext, probe_classes


@dataclass
class EvaluateConfig:
    """Everything `anoncli evaluate` needs: the two folders, the report folder, labels, probes, models, gate and parallelism."""

    original: Path
    anonymized: Path
    out: Path
    labels_file: Path | None = None
    labels_sep: str | None = None
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
    files_from: list[tuple[int, str]] | None = None  # (line, path) of --files-from: only these files of ORIGINAL
    utility: str | None = None  # feature outputs: --utility label column (default: the method's)
    private: str | None = None  # feature outputs: --private label column (default: the method's)
    # --attacker-data: (original, anonymized) of other speakers the attribute attackers also train on
    attacker_data: tuple[Path, Path] | None = None
    allow_missing: int = 0  # pairs with an unreadable file that the gate tolerates (--allow-missing)


@dataclass
class EvaluateResult:
    """The run's summary (summary.json), its exit code (0, or 4 when the gate failed) and the failed gate conditions."""

    summary: dict
    exit_code: int
    failed: list = field(default_factory=list)


def _log(message: str, progress: bool) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def prepare_out(out: Path, overwrite: bool) -> None:
    """Create the report folder, replacing an earlier report only with `overwrite`.

    Raises AnoncliError (exit 2) for a non-empty folder without `overwrite`, or one that is not an anoncli report.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise AnoncliError(f"{out}: already exists and is not empty (use --overwrite to replace the report)")
        if out.is_dir() and not report.is_report_like(out):
            raise AnoncliError(f"{out}: --overwrite refuses to delete a folder that is not an anoncli report")
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _first(items: list[str], shown: int = 3) -> str:
    """The first `shown` items joined with "; ", and how many more there are."""
    more = f"; and {len(items) - shown} more" if len(items) > shown else ""
    return "; ".join(items[:shown]) + more


def unreadable_meta(data, n_pairs: int) -> dict:
    """summary.json meta entries for the pairs whose audio could not be decoded: per side, the count and each
    file with its reason (`unreadable_anonymized`, `unreadable_anonymized_files`, and the same for `original`)."""
    meta = {}
    for side in ("anonymized", "original"):
        files = [why for s, why in data.unreadable.values() if s == side]
        meta[f"unreadable_{side}"] = len(files)
        if files:
            meta[f"unreadable_{side}_files"] = files
            warn(
                f"{len(files)} of {n_pairs} {side} files cannot be read and are left out of every figure "
                f"(summary.json meta.unreadable_{side}_files, scores.parquet score_notes): {_first(files)}"
            )
    return meta


def unscored_note(pair_notes: list[dict[str, str]], names: list[str]) -> str | None:
    """One note on the pairs left out of STOI, link cosine and ASV because a side is silent or too short
    (`anoncli.scoring.signal_metrics.pair_problem`), naming the first few; None when every pair was scored."""
    from anoncli.scoring.signal_metrics import TOO_SHORT

    problems = [(name, notes["link.cosine"]) for name, notes in zip(names, pair_notes) if "link.cosine" in notes]
    if not problems:
        return None
    short = sum(why == TOO_SHORT for _, why in problems)
    return (
        f"signal/link/asv: {len(problems)} of {len(pair_notes)} pairs not scored ({len(problems) - short} silent, "
        f"{short} too short; scores.parquet score_notes): {_first([f'{name} ({why})' for name, why in problems])}"
    )


def available_probes(ctx: ProbeContext) -> tuple[list[Probe], list[str]]:
    """Every registered probe's instances for this corpus, in run order, and notes on what cannot be probed."""
    probes, notes = [], []
    for cls in probe_classes():
        found, why = cls.available(ctx)
        probes.extend(found)
        notes.extend(why)
    return probes, notes


def select_probes(requested: list[str] | None, available: list[Probe], why: list[str] | None = None) -> list[Probe]:
    """The probes `--probes` names (all available ones when none are named); an unavailable name is an error,
    which gives the reason from `why` (the notes of `available_probes`, "COLUMN: reason") when there is one."""
    if not requested:
        return available
    names = [p.name for p in available]
    unknown = [p for p in requested if p not in names]
    if unknown:
        reasons = [note for note in (why or []) if note.split(":", 1)[0] in unknown]
        because = f" ({'; '.join(reasons)})" if reasons else ""
        raise AnoncliError(
            f"--probes: {', '.join(unknown)} not available for these labels{because}; available: {', '.join(names)}"
        )
    return [p for p in available if p.name in requested]


def _attacker_data(config: EvaluateConfig, tested_speakers: set, attacker_backend, executor):
    """Extract the attacker features of --attacker-data's pairs whose speaker is not a tested one.

    Raises InputError (exit 2) for a folder that cannot be opened or paired, or when no other speaker is left.
    """
    from anoncli.corpus import open_corpus
    from anoncli.evaluation.extraction import extract
    from anoncli.evaluation.pairing import pair_corpus
    from anoncli.evaluation.probes import AttackerData

    original, anonymized = (Path(p) for p in config.attacker_data)
    corpus = open_corpus(original, None, "auto", allow_commands=config.allow_commands)
    pairs = pair_corpus(corpus, anonymized).pairs
    kept = [(utt, path) for utt, path in pairs if utt.speaker is not None and utt.speaker not in tested_speakers]
    if not kept:
        raise InputError(
            f"--attacker-data {original}: no utterance of a speaker other than those evaluated "
            f"({len(pairs)} pairs, every one of a tested speaker or without a speaker label)"
        )
    data = extract(
        kept,
        None,
        attacker_backend,
        need_signal=False,
        need_attr=True,
        use_cache=config.use_cache,
        corpus_root=corpus.root,
        progress=config.progress,
        executor=executor,
        backend_spec=(config.asv_model, False),
    )
    ok = data.ok
    utts = [utt for (utt, _), good in zip(kept, ok) if good]
    notes = (
        [
            f"--attacker-data: {len(pairs) - len(kept)} of {len(pairs)} pairs left out (a speaker evaluated here, "
            "or no speaker label)"
        ]
        if len(kept) < len(pairs)
        else []
    )
    notes += [f"--attacker-data: {error}" for error in data.errors]
    return AttackerData(
        original=str(original.resolve()),
        anonymized=str(anonymized.resolve()),
        speakers=[u.speaker for u in utts],
        label_rows=[u.labels for u in utts],
        x_original=data.original.features[ok],
        x_anonymized=data.anonymized.features[ok],
        notes=notes,
    )


def evaluate(config: EvaluateConfig) -> EvaluateResult:
    """Pair, extract, run the probes, write the report (summary.json, scores.parquet, report.html) and check the gate.

    Raises AnoncliError/InputError (exit 2) for bad folders, labels, probe names or gate syntax.
    """
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
    corpus = open_corpus(
        config.original,
        config.labels_file,
        config.layout,
        allow_commands=config.allow_commands,
        labels_sep=config.labels_sep,
    )
    if config.files_from is not None:
        from anoncli.corpus.selection import select_files

        corpus = select_files(corpus, config.files_from)
        if not corpus.utterances:
            raise InputError("--files-from: the list names no file: nothing to evaluate")
    pairing = pair_corpus(corpus, config.anonymized)
    notes = list(pairing.notes)
    if Path(config.anonymized).resolve() == Path(config.original).resolve():
        notes.append("ANONYMIZED is ORIGINAL: a check of the probes themselves, with no anonymization to measure")
    utts = [u for u, _ in pairing.pairs]
    speakers = [u.speaker for u in utts]
    label_rows = [u.labels for u in utts]
    ctx = ProbeContext(config, corpus, pairing, utts, speakers, label_rows)
    available, label_notes = available_probes(ctx)
    probes = select_probes(config.probes, available, label_notes)
    if not utts and pairing.feature_outputs:  # feature vectors only: probes of audio pairs have nothing to read
        skipped = [p.name for p in probes if "pairs" in p.needs]
        probes = [p for p in probes if "pairs" not in p.needs]
        if skipped and config.probes:
            notes.append(f"not run on feature outputs (no audio pairs): {', '.join(skipped)}")
    names = [p.name for p in probes]
    if not config.probes and utts:  # feature outputs only: no audio pair, no attribute probe to explain
        notes.extend(label_notes)
    expected = {p.name: p.expected() for p in probes}
    if config.gate:  # unknown figure names fail now, before minutes of work
        conditions = gate_mod.parse_gate(
            config.gate,
            expected,
            skipped=label_notes,
            deferred=tuple(f"{p.name}." for p in probes if p.deferred_figures),
        )
        for line in gate_mod.beyond_chance(conditions, gate_mod.flatten(expected)):
            warn(line)
    prepare_out(out, config.overwrite)
    timings: dict[str, float] = {}
    what = f"{len(pairing.pairs)} audio pair{'' if len(pairing.pairs) == 1 else 's'}" + (
        " and feature outputs" if pairing.feature_outputs else ""
    )
    _log(f"evaluate: {what} ({pairing.source}); probes: {', '.join(names)}", config.progress)
    for note in notes:  # what will not be measured, and why (also in summary.json "notes")
        _log(f"evaluate: note: {note}", config.progress)

    summary: dict = {
        "meta": {
            "original": str(Path(config.original).resolve()),
            "anonymized": str(Path(config.anonymized).resolve()),
            "pairing": pairing.source,
            "methods": pairing.methods,
            "n_pairs": len(pairing.pairs),
            "unpaired_originals": pairing.unpaired,
            "probes": names,
            "seed": config.seed,
            "anoncli_version": __version__,
        }
    }
    per_utt: dict[str, np.ndarray] = {}
    trial_columns: dict = {k: [] for k in ("condition", "model", "utt_id", "target", "score")}
    plot_inputs: dict[str, dict] = {"trial_scores": {}, "per_speaker": {}, "confusions": {}, "roc_inputs": {}}
    tables: dict[str, list[dict]] = {}

    stack = contextlib.ExitStack()
    if utts and (config.jobs > 1 or config.backend != "local"):
        # One pool for the whole run: the extraction pass and the probes that decode audio (ASR) share it.
        from anoncli.parallel import make_executor

        ctx.executor = stack.enter_context(make_executor(config.backend, config.jobs, "cpu", config.scheduler))
    if utts:
        # one extraction pass computes what the chosen probes need
        from anoncli.evaluation.extraction import build_backends, extract, manifest_scores

        needs = set().union(*(p.needs for p in probes))
        need_embed, need_attr = "embeddings" in needs, "attacker_features" in needs
        t0 = time.time()
        backend, attacker_backend = build_backends(config.asv_model, need_embed, need_attr)
        # scores the anonymize run already wrote to its manifest are reused, not computed again
        extract_args = {
            "need_signal": "signal" in needs,
            "need_attr": need_attr,
            "use_cache": config.use_cache,
            "corpus_root": corpus.root,
            "progress": config.progress,
            "known": manifest_scores(pairing, Path(config.anonymized)),
        }
        # with an executor the chunks run on its workers, which build their encoders from backend_spec
        data = extract(
            pairing.pairs,
            backend,
            attacker_backend,
            executor=ctx.executor,
            backend_spec=(config.asv_model, need_embed),
            **extract_args,
        )
        timings["extract"] = time.time() - t0
        timings.update({f"extract.{k}": v for k, v in data.timings.items()})
        notes.extend(data.errors)
        ctx.data, ctx.backend_name = data, getattr(backend, "name", "")
        summary["meta"]["reused_manifest_scores"] = data.reused
        summary["meta"].update(unreadable_meta(data, len(pairing.pairs)))
        per_utt["duration_s"] = data.original.durations
        per_utt["anonymized_duration_s"] = data.anonymized.durations
        if config.attacker_data is not None and need_attr:
            t0 = time.time()
            ctx.attacker = _attacker_data(config, set(speakers), attacker_backend, ctx.executor)
            timings["extract.attacker_data"] = time.time() - t0
            summary["meta"]["attacker_data"] = ctx.attacker.describe()
            notes.extend(ctx.attacker.notes)

    for probe in probes:
        if "pairs" in probe.needs and ctx.data is None:
            continue
        t0 = time.time()
        result = probe.run(ctx)
        if result.summary is not None:
            summary[probe.name] = result.summary
        per_utt.update(result.columns)
        notes.extend(result.notes)
        if result.trials is not None:
            trial_columns = result.trials
        for kind, values in result.plots.items():
            plot_inputs[kind].update(values)
        tables.update(result.tables)
        if result.protocol is not None:
            summary["meta"].setdefault("attackers", {})[probe.name] = result.protocol
        timings[probe.timing_name] = time.time() - t0
    if ctx.executor is not None:
        stack.close()
    if ctx.data is not None:
        from anoncli.evaluation.extraction import UNREADABLE

        per_utt["score_notes"] = [
            "; ".join(
                f"{column}: {why}" for column, why in pair_notes.items() if column in per_utt or column == UNREADABLE
            )
            or None
            for pair_notes in ctx.data.notes
        ]
        unscored = unscored_note(ctx.data.notes, [u.utt_id for u in utts])
        if unscored:
            notes.append(unscored)
            _log(f"evaluate: note: {unscored}", config.progress)

    t0 = time.time()
    summary["notes"] = notes
    columns = {
        "utt_id": [u.utt_id for u in utts],
        "source_path": [u.source_path for u in utts],
        "anonymized_path": [str(p) for _, p in pairing.pairs],
    }
    for name in corpus.label_columns:
        columns[name] = [row.get(name) for row in label_rows]
    columns.update(per_utt)
    report.write_table(out / report.SCORES_NAME, columns)
    report.write_table(out / report.TRIALS_NAME, trial_columns)
    for name, rows in tables.items():
        if rows:
            import pandas as pd

            pd.DataFrame(rows).to_parquet(out / name, index=False)
    plots = report.make_plots(
        summary,
        plot_inputs["trial_scores"],
        plot_inputs["per_speaker"],
        plot_inputs["confusions"],
        plot_inputs["roc_inputs"],
    )
    timings["report"] = time.time() - t0
    timings["total"] = time.time() - started
    summary["timings_s"] = timings
    # the gate is checked first, so the report is written once with its section; its lines follow the table
    exit_code, failed, gate_lines = EXIT_OK, [], []
    if config.gate:
        conditions = gate_mod.parse_gate(config.gate, summary, expected)
        failed = gate_mod.check_gate(conditions, summary)
        unreadable = ctx.data.unreadable if ctx.data is not None else {}
        if len(unreadable) > config.allow_missing:  # a broken output must not pass because it was left out
            gate_lines.append(
                f"anoncli: gate failed: {len(unreadable)} of {len(pairing.pairs)} pairs have a file that cannot be "
                f"read (--allow-missing {config.allow_missing}): "
                f"{_first([why for _, why in unreadable.values()])}"
            )
            exit_code = EXIT_GATE
        kept = (summary.get("linkability") or {}).get("passthrough") or 0
        if kept and not any(cond.resolved == "linkability.passthrough" for cond in conditions):
            # an original voice must not be released because the gate asked about other figures
            gate_lines.append(
                f"anoncli: gate failed: {kept} output(s) keep the original voice (link cosine >= 0.999; "
                f"linkability.passthrough_utts); name a bound (link.passthrough<={kept}) to allow them"
            )
            exit_code = EXIT_GATE
        if pairing.unpaired:  # a gate judges a whole corpus, not the part an incomplete run wrote
            gate_lines.append(
                f"anoncli: gate failed: {config.anonymized} lacks {pairing.unpaired} of the "
                f"{len(corpus.utterances)} original files (finish the anonymize run, or narrow ORIGINAL with "
                "--files-from)"
            )
            exit_code = EXIT_GATE
        protocols = summary["meta"].get("attackers", {})
        for cond, value in failed:
            why = gate_mod.missing_reason(cond.resolved, summary)
            shown = (
                f"{value:.4g}{gate_mod.describe_scale(cond.resolved, gate_mod.flatten(summary))}"
                if np.isfinite(value)
                else "not measured" + (f" ({why})" if why else "")
            )
            alias = f" ({cond.resolved})" if cond.resolved != cond.name else ""
            under = gate_mod.protocol_of(cond.resolved, protocols)
            gate_lines.append(
                f"anoncli: gate failed: {cond.text}{alias}: measured {shown}" + (f" [{under}]" if under else "")
            )
        if failed:
            exit_code = EXIT_GATE
        summary["meta"]["gate"] = gate_mod.gate_record(
            conditions,
            failed,
            summary,
            protocols,
            passed=exit_code == EXIT_OK,
            unreadable=len(unreadable),
            allow_missing=config.allow_missing,
        )
    report.write_html(out, summary, plots)
    report.write_summary(out, summary)
    if config.print_table:
        report.print_table(summary)
    for line in gate_lines:
        print(line, file=sys.stderr)
    if config.gate and exit_code == EXIT_OK:
        _log(f"gate passed: {len(conditions)} condition(s)", config.progress)
    return EvaluateResult(summary, exit_code, failed)
