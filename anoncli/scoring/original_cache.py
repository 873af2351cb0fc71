"""Cache of the scores' original-side quantities (speaker embedding, F0 track, prosody), one file per corpus file.

`anoncli anonymize` scores every utterance against its original, and the
ASV score enrols each speaker on other originals. What depends only on an
original (a `quick_scores.Side`) is computed once and stored under

    $ANONCLI_CACHE/originals/<corpus>/<entry>.npz
    (default $XDG_CACHE_HOME/anoncli, else ~/.cache/anoncli)

where <corpus> is a hash of the corpus folder's resolved path and <entry>
a hash of the file's resolved path, size and modification time (ns), the
channel read (`--channel`) and `VERSION`. A rerun, a resumed run, or a second
method on the same corpus reads the originals' sides instead of recomputing
them; an edited file gets a new entry. Entries are written atomically
(temporary file, then rename), so parallel workers can share the folder.
Inputs produced by a command (Kaldi wav.scp pipes) have no file identity and
are not cached on disk. An unwritable cache only costs speed: a warning, then
the entries stay in memory.

Remove the folder to reclaim space; nothing else refers to it.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from anoncli.atomic import atomic_path
from anoncli.errors import warn
from anoncli.scoring.quick_scores import Side

# 1: resemblyzer embedding, F0 track (DIO on a 4 kHz copy + StoneMask, cleaned), 17 prosody statistics
VERSION = "1"
MEMORY_ENTRIES = 4096  # most recent entries kept in memory as well


def cache_root() -> Path:
    """$ANONCLI_CACHE, else $XDG_CACHE_HOME/anoncli, else ~/.cache/anoncli."""
    root = os.environ.get("ANONCLI_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "anoncli"
    )
    return Path(root)


def warn_unwritable(place: str | os.PathLike, err: OSError, lost: str) -> None:
    """Warn that the cache at `place` cannot be written (`lost`: what is not cached); only speed is lost."""
    warn(f"cache {os.fspath(place)}: cannot write ({err.strerror or err}); {lost}")


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def file_key(path: Path, channel: int | None = None) -> str | None:
    """The identity of a corpus file's decoded audio: path, size, mtime, channel and `VERSION`; None if unreadable."""
    try:
        resolved = Path(path).resolve()
        st = resolved.stat()
    except OSError:
        return None
    return f"{resolved}|{st.st_size}|{st.st_mtime_ns}|channel={channel}|v{VERSION}"


class OriginalCache:
    """Sides of a corpus's original files: in memory, and on disk under `cache_root()/originals/<corpus>`."""

    def __init__(self, corpus_root: str | Path, enabled: bool = True):
        tag = _digest(str(Path(corpus_root).resolve()))[:16]
        self.folder = cache_root() / "originals" / tag
        self.enabled = enabled
        self.memory: OrderedDict[str, Side] = OrderedDict()
        self.reads = 0  # entries read from disk
        self.writes = 0  # entries written to disk

    def _path(self, key: str) -> Path:
        return self.folder / f"{_digest(key)}.npz"

    def get(self, key: str | None) -> Side | None:
        """The cached `Side` for `key` (memory first, then disk); None when the key is None, absent or the entry is damaged."""
        if key is None:
            return None
        if key in self.memory:
            self.memory.move_to_end(key)
            return self.memory[key]
        if not self.enabled:
            return None
        path = self._path(key)
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["key"]) != key:
                    return None
                embedding = data["embedding"]
                problem = str(data["problem"])
                side = Side(embedding if embedding.size else None, data["f0"], data["prosody"], problem or None)
        except (OSError, KeyError, ValueError):  # absent, or a damaged entry: computed again
            return None
        self.reads += 1
        self._remember(key, side)
        return side

    def put(self, key: str | None, side: Side) -> None:
        """Remember `side` under `key` in memory and, when enabled, write it atomically to disk; a None key is ignored.

        A failed disk write is not an error: it warns once and turns the disk cache off for this run.
        """
        if key is None:
            return
        self._remember(key, side)
        if not self.enabled:
            return
        try:
            with atomic_path(self._path(key)) as tmp, open(tmp, "wb") as handle:  # a handle: savez adds no suffix
                np.savez(
                    handle,
                    key=np.array(key),
                    problem=np.array(side.problem or ""),
                    embedding=np.zeros(0, np.float32)
                    if side.embedding is None
                    else np.asarray(side.embedding, np.float32),
                    f0=np.asarray(side.f0, np.float32),
                    prosody=np.asarray(side.prosody, np.float32),
                )
            self.writes += 1
        except OSError as err:
            self.enabled = False
            warn_unwritable(self.folder, err, "the originals' scores are not cached")

    def _remember(self, key: str, side: Side) -> None:
        self.memory[key] = side
        self.memory.move_to_end(key)
        while len(self.memory) > MEMORY_ENTRIES:
            self.memory.popitem(last=False)
