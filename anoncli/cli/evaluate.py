"""`anoncli evaluate`: privacy and utility probes of an anonymized corpus against its original."""

import os
from pathlib import Path
from typing import Annotated

import typer

from anoncli.cli.output import FormatOption, LabelsSepOption, check_format, emit
from anoncli.errors import EXIT_OK


def _probes_help() -> str:
    from anoncli.evaluation.probes import PROBES

    named = ", ".join(name for name in PROBES if name != "attribute")
    return (
        f"Comma-separated probes: {named}, and label columns for the attribute attackers (gender, emotion, "
        "speaker, …). Default: every probe the labels allow."
    )


def evaluate(
    original: Annotated[
        Path,
        typer.Argument(metavar="ORIGINAL", help="Original corpus folder (labels from its metadata.csv or --labels)."),
    ],
    anonymized: Annotated[
        Path,
        typer.Argument(
            metavar="ANONYMIZED",
            help="anoncli output folder (paired through its manifest) or any folder mirroring ORIGINAL's relative paths.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Report folder: scores.parquet, trials.parquet, summary.json, report.html, plots/."
        ),
    ],
    probes: Annotated[str | None, typer.Option("--probes", help=_probes_help())] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels", help="Labels file (CSV, JSON Lines or Parquet) for ORIGINAL instead of its metadata.csv."
        ),
    ] = None,
    labels_sep: LabelsSepOption = None,
    layout: Annotated[str, typer.Option("--layout", help="Corpus layout of ORIGINAL, or auto.")] = "auto",
    asv_model: Annotated[
        str | None,
        typer.Option(
            "--asv-model",
            help="Speaker encoder: 'resemblyzer' (bundled, default), a local speechbrain model folder, or an `anoncli train --method asv` run folder.",
        ),
    ] = None,
    trials: Annotated[
        Path | None,
        typer.Option(
            "--trials",
            help="Kaldi-style trials file (MODEL UTT target|nontarget) instead of the seeded enrolment split.",
        ),
    ] = None,
    vocabulary: Annotated[
        str | None,
        typer.Option("--vocabulary", help="Closed ASR vocabulary: 'digits', a comma-separated word list, or @FILE."),
    ] = None,
    asr_model: Annotated[
        Path | None,
        typer.Option("--asr-model", help="Local speechbrain EncoderDecoderASR folder instead of pocketsphinx."),
    ] = None,
    asr_language: Annotated[
        str, typer.Option("--asr-language", help="Language of --asr-model (utterances labelled otherwise are skipped).")
    ] = "en",
    gate: Annotated[
        str | None,
        typer.Option(
            "--gate",
            help="Release gate, e.g. 'asv.OA.eer>=80,gender.gr>=90,signal.stoi>=0.8'; exit 4 when a condition fails.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of enrolment split, folds and bootstrap.")] = 0,
    bootstrap: Annotated[
        int,
        typer.Option(
            "--bootstrap", min=0, help="Bootstrap resamples (over speakers) for confidence intervals; 0 turns them off."
        ),
    ] = 200,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not read or write the cache of original-audio embeddings.")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing report folder.")] = False,
    fmt: FormatOption = "table",
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            help="No progress on stderr and no data on stdout (the exit code and REPORT tell the result).",
        ),
    ] = False,
    progress: Annotated[
        bool,
        typer.Option(
            "--progress/--no-progress", help="Progress on stderr (a bar on a terminal, plain lines in a log)."
        ),
    ] = True,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="Worker processes for feature extraction (decoding, embeddings, F0, signal metrics) and ASR decoding (default: one per CPU core).",
        ),
    ] = None,
    backend: Annotated[str, typer.Option("--backend", help="local (worker processes here) or dask.")] = "local",
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="Dask scheduler address (tcp://HOST:PORT) for --backend dask; without it a local cluster is started.",
        ),
    ] = None,
    allow_commands: Annotated[
        bool, typer.Option("--allow-commands", help="Allow Kaldi wav.scp entries of ORIGINAL that run shell commands.")
    ] = False,
    files_from: Annotated[
        str | None,
        typer.Option(
            "--files-from",
            help="Evaluate only the files of ORIGINAL listed in FILE, one path per line ('-' reads stdin).",
        ),
    ] = None,
    utility: Annotated[
        str | None,
        typer.Option(
            "--utility",
            help="Feature outputs: the label column the service learns (default: the method's, e.g. gender for siamese, event for rdalm).",
        ),
    ] = None,
    private: Annotated[
        str | None,
        typer.Option(
            "--private",
            help="Feature outputs: the label column the attacker learns (default: the method's, e.g. speaker within gender for siamese, speech for rdalm).",
        ),
    ] = None,
    attacker_data: Annotated[
        tuple[Path, Path] | None,
        typer.Option(
            "--attacker-data",
            metavar="ORIGINAL2 ANONYMIZED2",
            help="Another corpus and its anonymized folder whose other speakers the attribute attackers also learn from (original side: original and ignorant attackers; anonymized side: informed), e.g. every speaker a model was trained on. Speakers of ORIGINAL are dropped from it; the tested utterances stay those of ORIGINAL.",
        ),
    ] = None,
    allow_missing: Annotated[
        int,
        typer.Option(
            "--allow-missing",
            metavar="N",
            min=0,
            help="With --gate: let up to N pairs whose original or anonymized file cannot be read (broken, not audio, NaN samples) pass; by default one fails the gate. Each one is named on stderr and in summary.json meta either way.",
        ),
    ] = 0,
) -> None:
    """Measure how private and how useful an anonymized corpus is (offline).

    Prints the summary on stdout (a table, or the summary.json object with
    --format json) and writes REPORT. Exit codes: 0 done
    (and gate passed), 2 usage/input error, 4 release gate failed.

    Example: anoncli evaluate corpus/ anon/ --out report/ --gate "asv.OA.eer>=80,gender.gr>=90"
    """
    from anoncli.cli.options import check_backend
    from anoncli.corpus.selection import read_file_list
    from anoncli.evaluation.report import print_table
    from anoncli.evaluation.runner import EvaluateConfig
    from anoncli.evaluation.runner import evaluate as run_evaluation

    check_format(fmt)
    check_backend(backend, scheduler)
    config = EvaluateConfig(
        original=original,
        anonymized=anonymized,
        out=out,
        labels_file=labels,
        labels_sep=labels_sep,
        layout=layout,
        probes=[p.strip() for p in probes.split(",") if p.strip()] if probes else None,
        asv_model=asv_model,
        trials=trials,
        vocabulary=vocabulary,
        asr_model=str(asr_model) if asr_model else None,
        asr_language=asr_language,
        seed=seed,
        overwrite=overwrite,
        gate=gate,
        use_cache=not no_cache,
        n_boot=bootstrap,
        progress=progress and not quiet,
        print_table=False,
        jobs=jobs or len(os.sched_getaffinity(0)),
        backend=backend,
        scheduler=scheduler,
        allow_commands=allow_commands,
        files_from=read_file_list(files_from) if files_from is not None else None,
        utility=utility,
        private=private,
        attacker_data=attacker_data,
        allow_missing=allow_missing,
    )
    result = run_evaluation(config)
    emit(result.summary, fmt, print_table, quiet)
    if result.exit_code != EXIT_OK:
        raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    """Add the `evaluate` command to `app`."""
    app.command("evaluate", help=evaluate.__doc__)(evaluate)
