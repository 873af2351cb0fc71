"""`anoncli inspect`: summarise a corpus, an output folder, a manifest file or an evaluation report."""

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from anoncli.cli.options import layout_help
from anoncli.cli.output import LabelsSepOption, QuietOption, check_format, emit
from anoncli.errors import InputError


def inspect(
    path: Annotated[
        Path,
        typer.Argument(
            metavar="PATH", help="A corpus folder, an anoncli output folder, a manifest .parquet, or a report folder."
        ),
    ],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="Output on stdout: table (for people) or json (for programs).")
    ] = "table",
    quiet: QuietOption = False,
    labels: Annotated[Path | None, typer.Option("--labels", help="Labels file for a corpus folder.")] = None,
    labels_sep: LabelsSepOption = None,
    layout: Annotated[str, typer.Option("--layout", help=layout_help())] = "auto",
    allow_commands: Annotated[
        bool, typer.Option("--allow-commands", help="Allow Kaldi wav.scp entries that run shell commands.")
    ] = False,
    worst: Annotated[
        int | None,
        typer.Option("--worst", min=1, help="Report or output folders: list the N worst utterances by --by."),
    ] = None,
    by: Annotated[
        str,
        typer.Option(
            "--by",
            help="The score that ranks --worst: a per-utterance column (output folders: link_cosine, asv_score, gender_p_anon, stoi, f0_r, ...) or an alias (asv.link, asv, stoi, gender).",
        ),
    ] = "asv.link",
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Output folders: exit 3 when utterances are missing (from the corpus, or from the latest --files-from selection), duplicated or failed, or when an output keeps the original voice (link_cosine >= 0.999); the identity control's outputs keep it by design: they are reported as passthrough_control_outputs and do not fail the check.",
        ),
    ] = False,
) -> None:
    """Summarise PATH: corpus (files, hours, speakers, labels), output folder or manifest (rows, failures, throughput), or report.

    Example: anoncli inspect anon/ --format json | jq .ok
    """
    from anoncli.inspection import describe

    check_format(fmt)
    info = describe(
        path,
        labels=labels,
        layout=layout,
        allow_commands=allow_commands,
        worst=worst,
        by=by,
        check=check,
        labels_sep=labels_sep,
    )
    emit(info, fmt, _print_report if info.get("kind") == "report" else _print_table, quiet)
    if check and info.get("complete") is False:
        of = f" of the {info['expected']} expected ({info['expected_from']})" if "expected" in info else ""
        why = (
            f"{info.get('missing', 0)} missing{of}, {info.get('duplicated', 0)} duplicated, "
            f"{info.get('failed_utterances', 0)} failed utterance(s)"
        )
        if info.get("no_batch_written"):
            why = (
                f"0 done of {info.get('expected', 'an unknown number of')} utterance(s): its job stopped before "
                "the first batch was written (rerun the same anonymize command)"
            )
        if info.get("unmerged_batches"):
            why += (
                f", {info['unmerged_batches']} batch file(s) not merged (a job was killed or is still running: "
                "rerun it)"
            )
        if info.get("rows_not_in_corpus"):
            why += f"; {info['rows_not_in_corpus']} row(s) are of files not in the corpus"
        if info.get("passthrough_outputs"):
            why += (
                f", {info['passthrough_outputs']} output(s) keep the original voice (link_cosine >= 0.999: not "
                f"anonymized), e.g. {', '.join(info['passthrough_examples'][:3])}"
            )
        if info.get("broken_outputs"):
            why += (
                f", {info['broken_outputs']} output file(s) listed as done but missing or unreadable (rerun the "
                "same anonymize command to redo them)"
            )
        typer.echo(f"anoncli inspect: {path} is not complete: {why}", err=True)
        raise typer.Exit(3)


def _print_table(info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)
    table = Table(title=f"{info.get('kind', '')}: {info.get('path', '')}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in info.items():
        if key in ("kind", "path", "scores", "worst"):
            continue
        if isinstance(value, (dict, list)):
            text = json.dumps(value, default=str, ensure_ascii=False)  # labels as written (Stück, not St\u00fcck)
            value = text if len(text) < 200 else _short(value)
        table.add_row(key, str(value))
    console.print(table)
    if info.get("scores"):
        console.print(_scores_table(info["scores"]))
    if info.get("worst"):
        console.print(_worst_table(info["worst"], "worst"))


def _scores_table(scores: dict[str, dict]):
    """One row per score column: finite count, NaN count (see score_notes), mean and percentiles."""
    from rich.table import Table

    table = Table(title="per-utterance scores (ok rows; NaN = could not be computed, see score_notes)")
    stats = ("n", "nan", "mean", "p5", "p50", "p95")
    table.add_column("score")
    for stat in stats:
        table.add_column(stat, justify="right")
    for name, entry in scores.items():
        table.add_row(
            name,
            *(
                "" if entry.get(s) is None else f"{entry[s]:.3f}" if isinstance(entry[s], float) else str(entry[s])
                for s in stats
            ),
        )
    return table


def _worst_table(worst: list[dict], what: str):
    from rich.table import Table

    by = worst[0].get("by", "")
    table = Table(title=f"{what} by {by}")
    # the ranking name is the title, not a column repeated on every row; names wrap instead of being cut off
    columns = [column for column in worst[0] if column != "by"]
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in worst:
        table.add_row(*(_cell(row.get(column, "")) for column in columns))
    return table


def _cell(value: Any) -> str:
    """A table cell: floats to 4 significant digits (the JSON output keeps every digit)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _print_report(info: dict[str, Any]) -> None:
    from rich.console import Console

    from anoncli.evaluation.report import print_table

    print_table(info["summary"])
    worst = info.get("worst")
    if worst:
        Console(soft_wrap=True).print(_worst_table(worst, "least private"))


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "\n".join(f"{k}: {json.dumps(v, default=str, ensure_ascii=False)}" for k, v in value.items())
    return "\n".join(json.dumps(v, default=str, ensure_ascii=False) for v in value)


def register(app: typer.Typer) -> None:
    """Add the `inspect` command to `app`."""
    app.command("inspect")(inspect)


__all__ = ["inspect", "register", "InputError"]
