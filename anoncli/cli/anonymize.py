"""`anoncli anonymize`: the main job."""

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from anoncli.cli.options import check_backend, layout_help, parse_params, resolve_device
from anoncli.cli.output import LabelsSepOption, QuietOption, StdoutClosed, check_format, emit, print_rows
from anoncli.errors import EXIT_OK, AnoncliError, warn
from anoncli.jobs.sharding import parse_shard
from anoncli.methods import DEFAULT_METHOD, method_names

# --format: how the run summary is printed; the audio file format is --audio-format.
SUMMARY_FORMATS = ("table", "json", "jsonl")
AUDIO_FORMATS = ("wav", "flac")


def _default_jobs(device: str) -> int:
    # One process feeds a GPU; on CPU one single-threaded worker per core.
    return 1 if device.startswith("cuda") else max(1, len(os.sched_getaffinity(0)))


def anonymize(
    corpus: Annotated[Path, typer.Argument(metavar="CORPUS", help="Corpus folder (searched recursively for audio).")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (mirrors the corpus tree; must not be inside it).")
    ],
    method: Annotated[
        str, typer.Option("--method", "-m", help=f"Anonymization method: {', '.join(method_names())}.")
    ] = DEFAULT_METHOD,
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            help="Labels file (CSV, JSON Lines or Parquet, 'file_name' or 'path' column) instead of CORPUS/metadata.csv.",
        ),
    ] = None,
    labels_sep: LabelsSepOption = None,
    layout: Annotated[str, typer.Option("--layout", help=layout_help())] = "auto",
    allow_commands: Annotated[
        bool,
        typer.Option(
            "--allow-commands",
            help="Allow Kaldi wav.scp entries that run shell commands (they execute arbitrary code).",
        ),
    ] = False,
    seed: Annotated[
        int, typer.Option("--seed", help="Run seed; per-utterance randomness is derived from it and the utterance id.")
    ] = 0,
    alpha: Annotated[
        float | None, typer.Option("--alpha", help="McAdams: fixed coefficient instead of one drawn from U(0.5, 0.9).")
    ] = None,
    per_speaker: Annotated[
        bool,
        typer.Option(
            "--per-speaker",
            help="Draw random parameters per speaker (seeded by the speaker id) instead of per utterance.",
        ),
    ] = False,
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", help="Learned methods: a training run folder or checkpoint file.")
    ] = None,
    vocoder: Annotated[
        str | None,
        typer.Option(
            "--vocoder",
            help="Learned methods: mel-to-wave backend, one of phase, griffinlim, world, melgan, source_filter (default: source_filter for the shipped source-filter models, else phase; docs/vocoders.md).",
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="A method setting KEY=VALUE; repeatable. Known keys: mcadams alpha, backend, highpass; siamese noise; rdalm emit; world_phone pool_size, power, detail; gengan, pcmelgan, psegan, world_norm and world_phone strength (0-1, the share of a residual generator's change applied, for models trained by --method gengan-world, pcmelgan-world or psegan-world) (an unknown key is an error).",
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, help="Parallel workers (default: one per CPU core on CPU, 1 on GPU)."),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            help="Utterances per batch (default: sized from the corpus's total duration, about a minute of audio per batch; a job of under a minute of audio runs in one process).",
        ),
    ] = None,
    max_batch_seconds: Annotated[
        float | None,
        typer.Option(
            "--max-batch-seconds",
            min=0.001,
            help="Batches of similar-length utterances holding at most this many seconds of audio (instead of --batch-size; from file headers).",
        ),
    ] = None,
    backend: Annotated[
        str,
        typer.Option("--backend", help="local (worker processes on this machine) or dask (tasks on a Dask cluster)."),
    ] = "local",
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="With --backend dask: address of a running scheduler, e.g. tcp://10.0.0.5:8786 (default: start a local cluster with --jobs workers).",
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard", help="K/N: process only shard K (0-based) of N; 'auto' reads SLURM_ARRAY_TASK_ID/COUNT."
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Redo files already done (default: resume, skipping them).")
    ] = False,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Redo only the files that failed before.")
    ] = False,
    sample_rate: Annotated[
        int | None, typer.Option("--sample-rate", min=1000, help="Output sample rate (default: the input's).")
    ] = None,
    channel: Annotated[
        int | None,
        typer.Option(
            "--channel",
            min=1,
            help="Read channel N (1 = first/left) of multichannel files instead of their mono mixdown; mono files are read as they are.",
        ),
    ] = None,
    audio_format: Annotated[
        str, typer.Option("--audio-format", help="Audio file format written: wav or flac (16-bit PCM).")
    ] = "wav",
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Run summary on stdout: table, json, or jsonl (one JSON line per finished utterance, streamed while the job runs). Default: a one-line summary on stderr only. -q holds every format back.",
        ),
    ] = None,
    quiet: QuietOption = False,
    pseudonymize: Annotated[
        bool,
        typer.Option("--pseudonymize", help="Random pseudonyms for file, utterance and speaker ids; needs --mapping."),
    ] = False,
    mapping: Annotated[
        Path | None,
        typer.Option(
            "--mapping",
            metavar="FILE",
            help="Where to write the id -> pseudonym mapping (outside --out): a CSV file whatever its extension "
            "(columns utt_id, source_path, speaker, pseudo_utt_id, pseudo_speaker); the pseudonym key goes to "
            "FILE.key. Both are readable by their owner only (mode 0600): the mapping alone reverses the pseudonyms.",
        ),
    ] = None,
    score: Annotated[
        bool,
        typer.Option(
            "--score/--no-score",
            help="Per-utterance privacy and utility scores in the manifest: link_cosine, asv_score, {gender,emotion}_p_orig/_p_anon, stoi, f0_r, duration_ratio, level_change_db, with score_notes for each one that cannot be computed (default: on; originals are cached under $ANONCLI_CACHE).",
        ),
    ] = True,
    files_from: Annotated[
        str | None,
        typer.Option(
            "--files-from",
            help="Process only the files of CORPUS listed in FILE, one path per line ('-' reads stdin, e.g. from find); labels still come from CORPUS.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be done (JSON on stdout) and exit.")
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Progress on stderr: a bar on a terminal, in a log or pipe a plain line each time another 5 % of the files is done (batches finish whole, so lines may be further apart) (default: on).",
        ),
    ] = None,
) -> None:
    """Anonymize every audio file of CORPUS into OUT, with Parquet manifests; resumes by default.

    Example: anoncli anonymize examples/corpus --out anon/ --method mcadams --seed 1
    """
    from anoncli.jobs.engine import AnonymizeConfig, plan, run_anonymize

    if fmt in AUDIO_FORMATS:  # before --audio-format existed, --format named the audio format
        warn(f"--format {fmt} names the audio format: use --audio-format {fmt}")
        audio_format, fmt = fmt, None
    if fmt is not None:
        check_format(fmt, SUMMARY_FORMATS)
    _check_applicable(method, checkpoint, vocoder, alpha)
    device = resolve_device(device)
    check_backend(backend, scheduler)
    config = AnonymizeConfig(
        corpus=corpus,
        out=out,
        method=method,
        labels_file=labels,
        labels_sep=labels_sep,
        layout=layout,
        allow_commands=allow_commands,
        channel=channel,
        seed=seed,
        per_speaker=per_speaker,
        checkpoint=checkpoint,
        vocoder=vocoder,
        params=_method_params(param, alpha),
        device=device,
        jobs=jobs or _default_jobs(device),
        batch_size=batch_size,
        max_batch_seconds=max_batch_seconds,
        backend=backend,
        scheduler=scheduler,
        shard=parse_shard(shard),
        overwrite=overwrite,
        retry_failed=retry_failed,
        output_sample_rate=sample_rate,
        fmt=audio_format,
        pseudonymize=pseudonymize,
        mapping=mapping,
        score=score,
        files_from=files_from,
        dry_run=dry_run,
        progress=progress is not False and not quiet,
    )
    from anoncli.jobs.engine import check_paths

    check_paths(config)
    selected = None
    if files_from is not None:
        from anoncli.corpus import open_corpus
        from anoncli.corpus.selection import read_file_list, select_files

        entries = read_file_list(files_from)
        selected = select_files(
            open_corpus(
                config.corpus,
                config.labels_file,
                layout=config.layout,
                allow_commands=config.allow_commands,
                labels_sep=config.labels_sep,
            ),
            entries,
        )
    job_plan = plan(config, selected)
    if dry_run:
        if not quiet:  # -q: the exit code alone says whether the run could start
            typer.echo(json.dumps(job_plan.as_dict(config), indent=None if fmt == "jsonl" else 2))
        raise typer.Exit(EXIT_OK)
    # -q prints no data on stdout, whatever --format asks for (the summary formats are held back by emit)
    summary = run_anonymize(config, job_plan, on_batch=_stream_rows if fmt == "jsonl" and not quiet else None)
    # Counts, warnings, failures, and what OUT still holds as failed (the exit code follows OUT).
    for line in summary.report_lines(out)[1 if quiet else 0 :]:  # -q: warnings and failures only
        typer.echo(line, err=True)
    if fmt in ("table", "json"):
        emit(_summary_record(summary, out), fmt, _print_summary, quiet)
    if summary.exit_code != EXIT_OK:
        raise typer.Exit(summary.exit_code)


def _check_applicable(method: str, checkpoint: str | None, vocoder: str | None, alpha: float | None) -> None:
    """Refuse an option the method would ignore (see `check_method_options`), and --alpha, named as given,
    for a method without that setting; an unknown method is left to the engine's own message."""
    from anoncli.jobs.engine import check_method_options
    from anoncli.methods import method_class

    if method not in method_names():
        return
    check_method_options(method, checkpoint, vocoder)
    known = method_class(method).param_names()
    if alpha is not None and "alpha" not in known:
        raise AnoncliError(
            f"--alpha: the {method} method has no alpha setting (its --param keys: {', '.join(known) or 'none'})"
        )


def _method_params(pairs: list[str] | None, alpha: float | None) -> dict[str, str]:
    """--param KEY=VALUE pairs, with --alpha X as the McAdams setting alpha=X (McAdamsOptions)."""
    params = parse_params(pairs)
    if alpha is not None:
        if "alpha" in params:
            raise AnoncliError(f"--alpha {alpha} and --param alpha={params['alpha']}: give one of them")
        params["alpha"] = str(alpha)
    return params


# Row fields that describe the run rather than the utterance: left out of the jsonl stream.
_RUN_FIELDS = ("params", "anoncli_version", "method")


def _stream_rows(result) -> None:
    """--format jsonl: one JSON line per finished utterance of a batch, flushed so a pipe sees it at once."""
    import math
    import sys

    try:
        for row in result.rows:
            record = {
                key: (None if isinstance(value, float) and not math.isfinite(value) else value)
                for key, value in row.items()
                if key not in _RUN_FIELDS
            }
            sys.stdout.write(json.dumps(record, default=str) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `| head` has what it wanted: stop like any Unix filter, resumable
        raise StdoutClosed(
            "anonymize: standard output was closed by the reading command; the job stopped, "
            "and what was written is kept: rerun the same command to finish"
        ) from None


def _summary_record(summary, out: Path) -> dict:
    from dataclasses import asdict

    return {
        "out": str(out),
        **asdict(summary),
        "realtime_factor": summary.realtime_factor,
        "exit_code": summary.exit_code,
    }


def _print_summary(record: dict) -> None:
    def shown(value):
        if isinstance(value, list):
            return f"{len(value)} (see --format json)"
        if isinstance(value, dict):
            return f"{len(value)} fields (see --format json)" if value else "-"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
        return value

    print_rows("anonymize", ["field", "value"], [[key, shown(value)] for key, value in record.items()])


def register(app: typer.Typer) -> None:
    """Add the `anonymize` command to `app`."""
    app.command("anonymize")(anonymize)
