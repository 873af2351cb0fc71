"""The `anoncli` command: a thin Typer app; each command lives in its own module.

Exit codes (documented in README): 0 all done, 1 internal error, 2 usage or
input error, 3 finished but some files failed, 4 release gate failed.
"""

import importlib
import os
import sys

import typer

from anoncli import __version__
from anoncli.cli.output import StdoutClosed
from anoncli.errors import EXIT_INTERNAL, EXIT_PIPE_CLOSED, EXIT_USAGE, AnoncliError, describe_os_error

app = typer.Typer(
    name="anoncli",
    help="Anonymize whole speech corpora and measure how private and useful the result is.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Each module defines register(app) and adds its own command(s); one line per command module.
# The order of `anoncli --help`: the release workflow first (anonymize, evaluate, inspect, export), then the rest.
COMMAND_MODULES = [
    "anoncli.cli.anonymize",
    "anoncli.cli.evaluate",
    "anoncli.cli.inspect",
    "anoncli.cli.export",
    "anoncli.cli.train",
    "anoncli.cli.env",
]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"anoncli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """anoncli: anonymize speech corpora (McAdams by default, no training needed)."""


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)


_register_commands()


def fail(message: str, code: int = EXIT_USAGE) -> None:
    """Print a one-line error to stderr and exit with `code`."""
    typer.echo(f"anoncli: error: {message}", err=True)
    raise SystemExit(code)


def _drop_stdout() -> None:
    """Point standard output at /dev/null, so that flushing it at exit does not fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real descriptor (a test's captured stream): nothing to flush to a pipe
        pass


def _stop_on_sigterm() -> list:
    """Make SIGTERM stop a command the way Ctrl-C does (workers shut down, finished batches kept).

    Returns a list that holds the signal number once SIGTERM has arrived. Only
    in the main thread (signal handlers cannot be set elsewhere).
    """
    import signal
    import threading

    received: list = []
    if threading.current_thread() is not threading.main_thread():
        return received

    def handler(signum, frame):
        received.append(signum)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    return received


def main() -> None:
    """The `anoncli` entry point: run the command and turn errors into one stderr line and an exit code.

    Usage errors (a missing option, a bad value, an unknown command),
    AnoncliError/InputError and OSError exit 2 with one line on stderr, Ctrl-C
    130, standard output closed by its reader (`| head`) 141, any other
    exception 1 (an internal error; ANONCLI_DEBUG=1 shows the traceback).
    """
    from typer._click.exceptions import ClickException, NoArgsIsHelpError

    debug = os.environ.get("ANONCLI_DEBUG") == "1"
    for stream in (sys.stdout, sys.stderr):  # a name the terminal's encoding cannot show is escaped, not a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    terminated = _stop_on_sigterm()
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as err:  # bare `anoncli` or a command group: the help, as before
        err.show()
        raise SystemExit(EXIT_USAGE) from None
    except ClickException as err:  # a usage error (missing option, bad value, unknown command): one line
        context = getattr(err, "ctx", None)
        where = context.command_path if context is not None else "anoncli"
        message = err.format_message().replace("Value error, ", "")  # the validator's prefix says nothing
        fail(f"{where}: {message} (see {where} --help)", err.exit_code)
    except AnoncliError as err:
        if debug:
            raise
        fail(str(err), err.exit_code)
    except KeyboardInterrupt:  # Ctrl-C before the command line took over (it turns one into exit 130)
        code = 130
    except (StdoutClosed, BrokenPipeError) as err:  # `anoncli ... | head`: the reader went away
        _drop_stdout()
        if isinstance(err, StdoutClosed) and err.message:
            typer.echo(f"anoncli: {err.message}", err=True)
        code = EXIT_PIPE_CLOSED
    except SystemExit:
        raise
    except OSError as err:  # the machine refused (disk full, permissions, read-only): not a bug
        if debug:
            raise
        fail(describe_os_error(err, action=None), EXIT_USAGE)
    except Exception as err:  # an unexpected failure is a bug: say so in one line
        if debug:
            raise
        first = str(err).splitlines()[0] if str(err) else ""
        fail(f"internal error: {type(err).__name__}: {first} (set ANONCLI_DEBUG=1 for a traceback)", EXIT_INTERNAL)
    if code == 130 and terminated:  # SIGTERM (a scheduler's stop, `kill`): the same clean stop, the shell's code
        typer.echo("anoncli: terminated (SIGTERM); rerun the same command to resume", err=True)
        code = 128 + 15
    elif code == 130:  # the command was interrupted (Ctrl-C), which the command line reports as exit 130
        typer.echo("anoncli: interrupted; rerun the same command to resume", err=True)
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
