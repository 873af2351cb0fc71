"""One output sink for every command that prints data.

Data goes to stdout, everything else (progress, logs, warnings, errors) to
stderr, so `anoncli ... --format json | jq` works in a pipeline. Commands
declare `--format` with `FORMAT_OPTION` and `-q` with `QUIET_OPTION`, then
hand their result to `emit`.
"""

import json
import math
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

FORMATS = ("table", "json")

FormatOption = Annotated[
    str, typer.Option("--format", help="Output on stdout: table (for people) or json (for programs).")
]
LabelsSepOption = Annotated[
    str | None,
    typer.Option(
        "--labels-sep",
        help="Separator of a CSV labels table: one character, or 'tab' (default: sniffed from the header among , ; tab |).",
    ),
]
QuietOption = Annotated[
    bool,
    typer.Option(
        "--quiet", "-q", help="Print no data on stdout; only the exit code (and errors on stderr) tell the result."
    ),
]


class StdoutClosed(Exception):
    """The command reading our standard output went away (`anoncli anonymize --format jsonl | head`).

    Not an OSError on purpose: a job's handler for machine failures
    (`EnvironmentFailure` naming OUT) must not claim it; `anoncli.cli.app.main`
    stops quietly with exit 141 and prints `message` (what to do next) on stderr.
    """

    def __init__(self, message: str = ""):
        super().__init__(message)
        self.message = message


def check_format(fmt: str, allowed: tuple[str, ...] = FORMATS) -> str:
    """Validate a `--format` value; raises AnoncliError (exit 2) naming the choices."""
    from anoncli.errors import AnoncliError

    if fmt not in allowed:
        raise AnoncliError(f"--format {fmt!r}: expected one of {', '.join(allowed)}")
    return fmt


def emit(data: Any, fmt: str, table: Callable[[Any], None] | None = None, quiet: bool = False) -> None:
    """Print `data` on stdout as JSON, or hand it to `table` (which prints for people).

    `data` must be JSON-serialisable (non-finite floats become null, so the
    output stays strict JSON). With `quiet` nothing is printed.
    """
    if quiet:
        return
    if fmt == "json" or table is None:
        sys.stdout.write(json.dumps(_strict(data), indent=2, default=str) + "\n")
        sys.stdout.flush()
        return
    table(data)


def print_rows(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """A rich table on stdout (plain text when stdout is not a terminal)."""
    from rich.console import Console
    from rich.table import Table

    out = Table(title=title, title_justify="left")
    for name in columns:
        out.add_column(name, overflow="fold")
    for row in rows:
        out.add_row(*("" if value is None else str(value) for value in row))
    Console(file=sys.stdout, width=max(100, Console(file=sys.stdout).width)).print(out)


def _strict(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value
