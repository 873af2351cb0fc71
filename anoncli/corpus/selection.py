"""`--files-from FILE`: restrict a corpus to the files a list names (one path per line, `-` for stdin).

So that `find corpus -name '*.flac' -newer stamp | anoncli anonymize corpus
--files-from - --out anon/` processes just those files. Labels still come
from the corpus: the list only selects utterances of it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from anoncli.errors import InputError

if TYPE_CHECKING:
    from anoncli.corpus import Corpus


def read_file_list(source: str | os.PathLike) -> list[tuple[int, str]]:
    """The non-empty, non-comment lines of `source` (a file, or `-` for standard input), with their line numbers.

    Raises InputError (exit 2) when the file cannot be read or is not UTF-8 text.
    """
    name = os.fspath(source)
    try:
        if name == "-":
            text = sys.stdin.read()
        else:
            text = Path(name).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"--files-from {name}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise InputError(f"--files-from {name}: cannot read ({err.strerror or err})") from None
    return [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def select_files(corpus: Corpus, entries: list[tuple[int, str]], source: str = "--files-from") -> Corpus:
    """The corpus restricted to the listed files, in the corpus's order.

    An entry is a path relative to the current folder or absolute (what `find`
    prints), or relative to the corpus root. Raises InputError naming the
    first entry that is not an audio file of the corpus (with the line number).
    """
    root = corpus.root.resolve()
    by_path: dict[str, int] = {}
    for index, utt in enumerate(corpus.utterances):
        for key in _keys(utt.path, root, utt.rel_path, utt.source_path):
            by_path.setdefault(key, index)
    chosen: set[int] = set()
    for line_no, entry in entries:
        index = _lookup(entry, root, by_path)
        if index is None:
            where = (
                ""
                if Path(entry).expanduser().is_absolute()
                else f" (a relative path is looked for under the current folder {Path.cwd()} and under the corpus root)"
            )
            raise InputError(f"{source} line {line_no}: {entry}: not an audio file of the corpus {corpus.root}{where}")
        chosen.add(index)
    kept = [utt for index, utt in enumerate(corpus.utterances) if index in chosen]
    return replace(
        corpus,
        utterances=kept,
        notes=[*corpus.notes, f"{len(kept)} of {len(corpus.utterances)} files selected by {source}"],
    )


def _keys(path: Path, root: Path, rel_path: str, source_path: str) -> set[str]:
    keys = {rel_path, source_path}
    try:
        keys.add(str(path.resolve()))
    except OSError:
        pass
    return keys


def _lookup(entry: str, root: Path, by_path: dict[str, int]) -> int | None:
    if entry in by_path:
        return by_path[entry]
    candidate = Path(entry).expanduser()
    for path in (candidate, root / candidate):
        try:
            resolved = path.resolve()
        except OSError:
            continue
        if str(resolved) in by_path:
            return by_path[str(resolved)]
        if resolved.is_relative_to(root):
            rel = resolved.relative_to(root).as_posix()
            if rel in by_path:
                return by_path[rel]
    return None
