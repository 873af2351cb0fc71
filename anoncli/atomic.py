"""Atomic file writes: a killed process leaves either the old file or the new one, never half of one.

Every write goes to a sibling temporary name that a resumed job recognises as
an unfinished write (`.NAME.anoncli-tmp-HOST-PID`), then is renamed over the
final name (`os.replace`, atomic on POSIX file systems). The temporary file
is removed when the write fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TEMP_MARK = ".anoncli-tmp-"


def temp_path_for(path: str | os.PathLike) -> Path:
    """A sibling name that a resumed job recognises as an unfinished write."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARK}{socket.gethostname()}-{os.getpid()}")


def is_temp_path(path: str | os.PathLike) -> bool:
    """Whether `path` names an unfinished write of `atomic_path` (hidden, with the temp mark)."""
    name = Path(path).name
    return name.startswith(".") and TEMP_MARK in name


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, make_parents: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on error it is removed.

    Raises whatever the write raised (OSError for a full disk, a missing
    permission, ...); `path` is then unchanged.
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (temp file then rename); raises OSError with `path` unchanged on failure."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` as UTF-8 to `path` atomically; raises OSError with `path` unchanged on failure."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """JSON with two-space indent and a final newline; values JSON cannot hold are written with str()."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")
