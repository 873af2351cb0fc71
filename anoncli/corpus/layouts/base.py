"""What every corpus layout module provides, and the one walk they share.

A layout recognises a corpus from a `Scan` (its audio paths and the side files
near its root) and turns every audio path into an `Utterance` with labels.
Detection only looks at names; no audio file is opened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from anoncli.corpus.utterance import Utterance, utt_id_from_rel_path
from anoncli.corpus.walk import WalkStats, iter_audio_files

# A layout is chosen when at least this share of the sampled audio names parse.
ACCEPT_SHARE = 0.9
# Detection parses at most this many names, spread evenly over the sorted list.
DETECT_SAMPLE = 2000


@dataclass
class Scan:
    """One walk of a corpus folder, shared by every layout's detector and loader."""

    root: Path
    audio: list[str]  # sorted posix paths relative to root
    stats: WalkStats

    @classmethod
    def of(cls, root: Path) -> Scan:
        """Walk `root` once: its audio paths (sorted) and the walk's statistics and side files."""
        stats = WalkStats()
        audio = sorted(iter_audio_files(root, stats))
        return cls(root, audio, stats)

    def sample(self, n: int = DETECT_SAMPLE) -> list[str]:
        """At most `n` audio paths spread evenly over the sorted list (all of them when there are fewer)."""
        if len(self.audio) <= n:
            return self.audio
        step = len(self.audio) / n
        return [self.audio[int(i * step)] for i in range(n)]

    def side_file(self, *names: str, case_insensitive: bool = True) -> Path | None:
        """The first side file (root or one folder down) whose name is one of `names`."""
        wanted = {n.lower() if case_insensitive else n for n in names}
        hits = []
        for rel in self.stats.side_files:
            base = rel.rsplit("/", 1)[-1]
            if (base.lower() if case_insensitive else base) in wanted:
                hits.append(rel)
        if not hits:
            return None
        hits.sort(key=lambda r: (r.count("/"), r))  # the shallowest wins
        return self.root / hits[0]


@dataclass
class Detection:
    """A layout's claim on a scanned folder: its name, the share of sampled names it parses, and why."""

    layout: str
    share: float  # share of sampled audio names the layout parses
    reason: str


@dataclass
class LayoutResult:
    """What a layout loads: utterances, their label columns, the label source (a path, or None) and notes for the user."""

    utterances: list[Utterance]
    label_columns: list[str]
    labels_source: str | None = None
    notes: list[str] = field(default_factory=list)


# When one utterance exists in several formats, the first of these is read.
_FORMAT_RANK = {"wav": 0, "flac": 1}


def prefer_lossless(utterances: list[Utterance]) -> tuple[list[Utterance], int]:
    """Drop copies of an utterance in a worse format; copies in the same format are left for the id check."""
    position: dict[str, int] = {}  # utt_id -> index in kept
    kept: list[Utterance] = []
    skipped = 0
    for utt in utterances:
        at = position.get(utt.utt_id)
        if at is None:
            position[utt.utt_id] = len(kept)
            kept.append(utt)
            continue
        mine, theirs = (_FORMAT_RANK.get(u.rel_path.rsplit(".", 1)[-1].lower(), 2) for u in (utt, kept[at]))
        if mine == theirs:
            kept.append(utt)  # a genuine clash: open_corpus reports both paths
        else:
            if mine < theirs:
                kept[at] = utt
            skipped += 1
    return kept, skipped


class Layout:
    """Base class: subclasses set `name`, `columns` and implement detect/load."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    columns: ClassVar[tuple[str, ...]] = ()
    needs_walk: ClassVar[bool] = True

    def detect(self, scan: Scan) -> Detection | None:
        """A `Detection` when the scanned folder looks like this layout, else None; looks at names only."""
        raise NotImplementedError

    def load(self, scan: Scan, **options) -> LayoutResult:
        """The utterances and labels of the scanned folder; raises InputError (exit 2) on unreadable or malformed side files."""
        raise NotImplementedError


class FilenameLayout(Layout):
    """A corpus whose labels are coded in its audio paths (plus optional side tables).

    Subclasses give `pattern` (matched against the path relative to the root,
    with `search`, so it may anchor on the end only) and `labels_for(match,
    context)`; `context(scan)` loads the side tables once.
    """

    pattern: ClassVar[re.Pattern]

    def parse(self, rel_path: str) -> re.Match | None:
        """The layout's `pattern` searched in a path relative to the root; None when the name does not follow the layout."""
        return self.pattern.search(rel_path)

    def detect(self, scan: Scan) -> Detection | None:
        """The share of sampled names that parse; None when none does."""
        sample = scan.sample()
        if not sample:
            return None
        hits = sum(1 for rel in sample if self.parse(rel) is not None)
        if hits == 0:
            return None
        share = hits / len(sample)
        return Detection(self.name, share, f"{hits} of {len(sample)} sampled file names follow the {self.title} naming")

    def context(self, scan: Scan) -> dict:
        """Side tables loaded once per corpus (speaker tables, transcripts' folder); key "_notes" holds remarks for the user."""
        return {}

    def utt_id_for(self, match: re.Match, rel_path: str) -> str:
        """The corpus's own utterance id (unique within the corpus) by default: the file stem."""
        return rel_path.rsplit("/", 1)[-1].rsplit(".", 1)[0]

    def labels_for(self, match: re.Match, context: dict) -> dict[str, str | None]:
        """The labels coded in one matched path, with help from `context`: {column: value or None}."""
        raise NotImplementedError

    def source_note(self, context: dict) -> str | None:
        """Where the side labels came from (shown to the user), or None."""
        return None

    def load(self, scan: Scan, **options) -> LayoutResult:
        """Every audio path as an utterance: parsed names get labels, others keep their path as id and no labels (noted)."""
        context = self.context(scan)
        utterances = []
        unmatched = 0
        root = scan.root
        empty = dict.fromkeys(self.columns)
        for rel in scan.audio:
            match = self.parse(rel)
            if match is None:
                unmatched += 1
                utterances.append(Utterance(utt_id_from_rel_path(rel), root / rel, rel, dict(empty)))
                continue
            labels = dict(empty)
            labels.update(self.labels_for(match, context))
            utterances.append(Utterance(self.utt_id_for(match, rel), root / rel, rel, labels))
        notes = list(context.get("_notes", []))
        utterances, skipped = prefer_lossless(utterances)
        if skipped:
            notes.append(
                f"{skipped} file(s) skipped: the same utterance exists as WAV or FLAC (e.g. CREMA-D's AudioMP3/)"
            )
        if unmatched:
            notes.append(
                f"{unmatched} audio file(s) do not follow the {self.title} naming; they are kept, "
                "with their path as utterance id and no labels"
            )
        return LayoutResult(utterances, list(self.columns), self.source_note(context), notes)
