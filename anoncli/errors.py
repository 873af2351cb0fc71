"""Exceptions that carry the CLI's documented exit codes.

A user error is reported as one line on stderr, without a traceback (unless
ANONCLI_DEBUG=1), so shell pipelines get a readable reason and a stable code.
"""

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_GATE = 4
EXIT_UNHEALTHY = 5  # `anoncli env`: a backend the default paths need is broken


class AnoncliError(Exception):
    """A problem the user can fix: bad input, bad option, missing model."""

    exit_code = EXIT_USAGE


class InputError(AnoncliError):
    """A file or folder given by the user cannot be used as it is."""


class AudioError(Exception):
    """One audio file cannot be decoded or processed; a batch job records it and goes on."""
