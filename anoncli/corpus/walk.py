"""Recursive discovery of audio files under a corpus root."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import soundfile as sf

# Extensions soundfile decodes; the formats libsndfile reports plus common aliases.
_EXTRA = {"aif", "oga", "opus", "sph", "nist", "mp3"}
AUDIO_EXTENSIONS = frozenset({fmt.lower() for fmt in sf.available_formats()} | _EXTRA) - {"raw"}


def is_audio_name(name: str) -> bool:
    return name.rsplit(".", 1)[-1].lower() in AUDIO_EXTENSIONS if "." in name else False


@dataclass
class WalkStats:
    audio_files: int = 0
    ignored_files: int = 0


def iter_audio_files(root: Path, stats: WalkStats | None = None) -> Iterator[str]:
    """Yield posix paths of audio files relative to `root`, in no particular order.

    Hidden files and folders (a leading dot) are skipped: they hold unfinished
    writes and tool state, never corpus audio.
    """
    stats = stats if stats is not None else WalkStats()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=True):
                stack.append(Path(entry.path))
            elif is_audio_name(entry.name):
                stats.audio_files += 1
                yield Path(entry.path).relative_to(root).as_posix()
            else:
                stats.ignored_files += 1
