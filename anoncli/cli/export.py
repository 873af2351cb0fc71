"""`anoncli export OUT --to kaldi|audiofolder DIR`: hand anonymized audio to other tools."""

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from anoncli.cli.output import FormatOption, QuietOption, check_format, emit


class ExportFormat(str, Enum):
    """`export --to` choices: a Kaldi data folder or a Hugging Face audiofolder."""

    kaldi = "kaldi"
    audiofolder = "audiofolder"


def export(
    out: Annotated[
        Path,
        typer.Argument(
            metavar="OUT", help="Output folder of `anoncli anonymize` (with manifest/).", show_default=False
        ),
    ],
    dest: Annotated[
        Path,
        typer.Argument(
            metavar="DEST", help="Folder to create (must be empty or absent; outside OUT).", show_default=False
        ),
    ],
    to: Annotated[
        ExportFormat,
        typer.Option(
            "--to",
            help="kaldi: wav.scp/utt2spk/spk2utt/spk2gender/text; audiofolder: audio + metadata.jsonl (every label a string, null where missing).",
        ),
    ] = ExportFormat.kaldi,
    pseudonymize: Annotated[
        bool, typer.Option("--pseudonymize", help="Export keyed pseudonyms instead of utterance and speaker ids.")
    ] = False,
    mapping: Annotated[
        Path | None,
        typer.Option(
            "--mapping",
            help="With --pseudonymize: CSV of original id -> pseudonym, written to this file (never inside DEST), its key next to it as <this file>.key.",
        ),
    ] = None,
    copy: Annotated[
        bool,
        typer.Option(
            "--copy", help="Copy audio instead of hard-linking it (audiofolder, or kaldi with --pseudonymize)."
        ),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a non-empty DEST and an existing mapping file.")
    ] = False,
    fmt: FormatOption = "table",
    quiet: QuietOption = False,
    as_json: Annotated[bool, typer.Option("--json", hidden=True, help="Same as --format json.")] = False,
) -> None:
    """Export the finished utterances of OUT to DEST as a Kaldi data folder or an audiofolder.

    Example: anoncli export anon/ --to kaldi data/anon_dev --pseudonymize --mapping ~/private/map.csv
    """
    from anoncli.export import export_output

    fmt = check_format("json" if as_json else fmt)
    summary = export_output(
        out, to.value, dest, pseudonymize=pseudonymize, mapping=mapping, overwrite=overwrite, link=not copy
    )
    emit(summary.as_dict(), fmt, _print_summary, quiet)
    if summary.mapping:
        typer.echo(f"mapping (keep private): {summary.mapping}", err=True)
    if summary.dropped_columns:
        typer.echo(f"dropped identifying columns: {', '.join(summary.dropped_columns)}", err=True)
    for note in summary.notes:
        typer.echo(f"note: {note}", err=True)


def _print_summary(summary: dict) -> None:
    typer.echo(
        f"{summary['format']}: {summary['utterances']} utterances, {summary['speakers']} speakers -> {summary['dest']}"
    )


def register(app: typer.Typer) -> None:
    """Add the `export` command to `app`."""
    app.command("export")(export)
