"""`anoncli train`: train a learned method or an attacker model."""

import json
from pathlib import Path
from typing import Annotated

import typer

from anoncli.cli.options import layout_help, parse_params, resolve_device
from anoncli.cli.output import FormatOption, LabelsSepOption, check_format, emit, print_rows
from anoncli.training import TrainOptions, get_trainer, trainer_names


def train(
    corpus: Annotated[Path, typer.Argument(metavar="CORPUS", help="Corpus folder to train on.")],
    method: Annotated[str, typer.Option("--method", "-m", help="What to train (see the list in --help).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder for checkpoints, log.parquet and model.json.")],
    labels: Annotated[
        Path | None,
        typer.Option("--labels", help="Labels file (CSV, JSON Lines or Parquet) instead of the corpus' metadata."),
    ] = None,
    labels_sep: LabelsSepOption = None,
    layout: Annotated[str, typer.Option("--layout", help=layout_help())] = "auto",
    label: Annotated[str | None, typer.Option("--label", help="Label column an attribute attacker learns.")] = None,
    attribute: Annotated[
        str | None, typer.Option("--attribute", help="Private attribute column (learned methods).")
    ] = None,
    utility: Annotated[
        str | None, typer.Option("--utility", help="Utility label column (representation methods).")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option("--epochs", min=1, help="Training epochs (default: the config's).")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Batch size (default: the config's).")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Random seed (splits, initialisation, noise).")] = 0,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            help='A preset of the trainer (quick or full; sf-quick or sf-full for the -sf trainers) or a JSON config file (keys of its config; "base" names the preset it extends).',
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="KEY=VALUE setting of the trainer's config, converted by its type (numbers, yes/no, comma lists such as channels=4,8,16); repeatable.",
        ),
    ] = None,
    max_minutes: Annotated[
        float | None,
        typer.Option(
            "--max-minutes",
            min=0,
            help="Stop after the epoch that passes this many minutes; rerun the command to continue (default: the config's, 0 = no limit).",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start over even if RUN holds a finished or partial run.")
    ] = False,
    register: Annotated[
        bool,
        typer.Option(
            "--register",
            help="Make the trained model what `anonymize --method M` uses by default (copied to $ANONCLI_MODELS/M, replacing the one there). Without it, use the run with --checkpoint RUN.",
        ),
    ] = False,
    fmt: FormatOption = "table",
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="No progress on stderr and no data on stdout (the exit code and RUN tell the result)."
        ),
    ] = False,
    progress: Annotated[
        bool,
        typer.Option(
            "--progress/--no-progress",
            help="Progress on stderr: the split's size, bars on a terminal and a line per epoch (resume and stop notes always).",
        ),
    ] = True,
) -> None:
    """Train a learned anonymization method or an attacker model; resumes a killed run.

    Example: anoncli train --method gengan corpus/ --out runs/gengan --epochs 20
    """
    check_format(fmt)
    trainer = get_trainer(method)
    options = TrainOptions(
        corpus=corpus,
        out=out,
        labels_file=labels,
        labels_sep=labels_sep,
        layout=layout,
        label=label,
        attribute=attribute,
        utility=utility,
        epochs=epochs,
        batch_size=batch_size,
        device=resolve_device(device),
        seed=seed,
        overwrite=overwrite,
        config=config,
        extra=parse_params(param),
        register=register,
        max_minutes=max_minutes,
        progress=progress and not quiet,
    )
    summary = trainer(options)
    emit(summary, fmt, _print_summary, quiet)
    if "registered" in summary and not quiet:  # a method model: say how `anonymize` gets it
        method = summary.get("method") or method  # gengan-world trains a gengan model
        if summary["registered"]:
            typer.echo(
                f"anoncli train: registered: `anoncli anonymize --method {method}` now uses {summary['registered']}",
                err=True,
            )
        else:
            typer.echo(
                f"anoncli train: not registered: use it with `--checkpoint {summary.get('run', out)}`, "
                f"or rerun with --register to make it the default for --method {method}",
                err=True,
            )


def _shown(value):
    """A summary value for the table: floats to 4 significant digits (inside dicts and lists too); JSON keeps them whole."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_shown(v) for v in value]
    return value


def _print_summary(summary: dict) -> None:
    rows = [
        [
            key,
            json.dumps(_shown(value), default=str)
            if isinstance(value, (dict, list))
            else "no"
            if key == "registered" and value is None
            else _shown(value),
        ]
        for key, value in summary.items()
    ]
    print_rows("train", ["field", "value"], rows)


def register(app: typer.Typer) -> None:
    """Add the `train` command to `app`, its help listing the trainable methods."""
    app.command(
        "train",
        help="Train a learned method or attacker. Methods: "
        + (", ".join(trainer_names()) or "none yet")
        + ".\n\nExample: anoncli train --method gengan corpus/ --out runs/gengan",
    )(train)
