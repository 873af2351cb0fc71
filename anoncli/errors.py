"""Exceptions that carry the CLI's documented exit codes.

A user error is reported as one line on stderr, without a traceback (unless
ANONCLI_DEBUG=1), so shell pipelines get a readable reason and a stable code.
"""

from __future__ import annotations

import errno
import os
import sys

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_GATE = 4
EXIT_UNHEALTHY = 5  # `anoncli env`: a backend the default paths need is broken
EXIT_PIPE_CLOSED = 141  # the reader of standard output went away (128 + SIGPIPE, as the shell reports it)


class AnoncliError(Exception):
    """A problem the user can fix: bad input, bad option, missing model."""

    exit_code = EXIT_USAGE


class InputError(AnoncliError):
    """A file or folder given by the user cannot be used as it is."""


class EnvironmentFailure(AnoncliError):
    """The machine refused an operation (disk full, no permission, read-only file system, ...).

    Not a problem of one input file: a job stops (exit 2) instead of recording
    every following file as failed, and a rerun resumes where it stopped.
    """


class AudioError(Exception):
    """One audio file cannot be decoded or processed; a batch job records it and goes on."""


# What a user can do about the usual OS-level failures, by errno.
_ERRNO_HINTS = {
    errno.ENOSPC: "free some space and rerun to resume",
    getattr(errno, "EDQUOT", errno.ENOSPC): "free some space and rerun to resume",
    errno.EROFS: "choose a folder on a writable file system",
    errno.EACCES: "check the folder's permissions",
    errno.EPERM: "check the folder's permissions",
    errno.ENOENT: "a folder on the way is missing",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a file is in the way of a folder of that name",
}


def describe_os_error(err: OSError, path: str | os.PathLike | None = None, action: str | None = "cannot write") -> str:
    """One line naming the path and the cause: `out/a.wav: cannot write (No space left on device; free ...)`.

    `path` is the name the user knows (the final file, not its temporary
    sibling); without it the error's own file name is used. `action` None
    gives `path: cause; hint`.
    """
    where = os.fspath(path) if path is not None else (err.filename if err.filename is not None else None)
    cause = err.strerror or (str(err).splitlines()[0] if str(err) else type(err).__name__)
    hint = _ERRNO_HINTS.get(err.errno) if err.errno is not None else None
    text = f"{action} ({cause}{'; ' + hint if hint else ''})" if action else f"{cause}{'; ' + hint if hint else ''}"
    return f"{os.fsdecode(where)}: {text}" if where is not None else text


def environment_failure(
    err: OSError, path: str | os.PathLike | None = None, action: str | None = "cannot write"
) -> EnvironmentFailure:
    """The EnvironmentFailure to raise for an OSError met while writing (or reading) `path`."""
    return EnvironmentFailure(describe_os_error(err, path, action))


def warn(message: str) -> None:
    """One warning line on stderr (data goes to stdout, so pipelines are not disturbed)."""
    print(f"anoncli: warning: {message}", file=sys.stderr, flush=True)
