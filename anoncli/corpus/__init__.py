"""Corpus discovery: audio files, their stable ids and their labels.

`open_corpus` walks the folder once, recognises its layout (a known corpus,
a Kaldi data folder, an audiofolder with a metadata table, or plain audio)
and returns every utterance with labels under normalised column names.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from anoncli.corpus.labels import find_metadata, label_value
from anoncli.corpus.layouts import AMBIGUOUS_SHARE, LAYOUTS, Scan, describe_tried, detect_named, get_layout
from anoncli.corpus.layouts.audiofolder import attach_table, table_notes
from anoncli.corpus.layouts.base import FilenameLayout
from anoncli.corpus.utterance import Utterance, utt_id_from_rel_path
from anoncli.corpus.walk import WalkStats, iter_audio_files, text_name
from anoncli.errors import InputError, warn

# A second known layout matching at least this share of the names means the folder mixes corpora.
MIXED_SHARE = 0.1

# Columns the manifest owns (every one of anoncli.manifest.schema's fixed fields); a label
# column of the same name is renamed label_<name>.
RESERVED = {
    "utt_id",
    "source_path",
    "output_path",
    "features_path",
    "duration_s",
    "sample_rate",
    "output_sample_rate",
    "method",
    "params",
    "seed",
    "status",
    "error",
    "elapsed_s",
    "anoncli_version",
    "note",
    "source_size",
    "source_mtime_ns",
    "source_sha256",
    "link_cosine",
    "asv_score",
    "gender_p_orig",
    "gender_p_anon",
    "emotion_p_orig",
    "emotion_p_anon",
    "stoi",
    "f0_r",
    "duration_ratio",
    "level_change_db",
    "score_notes",
}

__all__ = [
    "Corpus",
    "Utterance",
    "open_corpus",
    "describe_corpus",
    "LAYOUTS",
    "utt_id_from_rel_path",
    "iter_audio_files",
    "WalkStats",
]


@dataclass
class Corpus:
    """An opened corpus: its root, utterances in walk order, label columns, and how they were found.

    `layout` is the layout name ("plain" without labels), `labels_source` the
    table the labels came from, `ignored_files` the non-audio files skipped, and
    `notes` one-line remarks for the user.
    """

    root: Path
    utterances: list[Utterance]
    label_columns: list[str]
    layout: str = "plain"
    labels_source: str | None = None
    ignored_files: int = 0
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self):
        return iter(self.utterances)


def _rename_reserved(columns: list[str]) -> dict[str, str]:
    return {c: (f"label_{c}" if c in RESERVED else c) for c in columns}


def _text_names(utterances: list[Utterance], root: Path, notes: list[str]) -> list[Utterance]:
    """Utterances whose ids and paths are valid text (`walk.text_name`); `path` keeps the name as the file system
    holds it. Names whose bytes are not UTF-8 are named in a warning and a note."""
    fixed, escaped = [], []
    for utt in utterances:
        names = (utt.utt_id, utt.rel_path, utt.source or "")
        texts = tuple(text_name(n) for n in names)
        if texts == names:
            fixed.append(utt)
            continue
        fixed.append(replace(utt, utt_id=texts[0], rel_path=texts[1], source=texts[2] if utt.source else None))
        if "\\x" in texts[1] and "\\x" not in utt.rel_path:
            escaped.append(texts[1])
    if escaped:
        message = (
            f"{root}: {len(escaped)} file name(s) are not UTF-8; they are recorded, and their outputs named, "
            f"with \\xNN for each byte that is not (first: {escaped[0]})"
        )
        warn(message)
        notes.append(message)
    return fixed


def _drop_missing_markers(utterances: list[Utterance], columns: list[str]) -> None:
    """Every layout's label values that mean "no value" (`NA`, `N/A`, `NaN`, `null`, `None`, `-`, empty) become None."""
    for utt in utterances:
        for column in columns:
            value = utt.labels.get(column)
            if value is not None and label_value(column, value) is None:
                utt.labels[column] = None


def _choose_layout(root: Path, layout: str, labels_file: Path | None):
    """Return (layout object, scan, notes); walk the folder only when the layout needs it."""
    no_walk = Scan(root, [], WalkStats())
    if layout != "auto":
        chosen = get_layout(layout)
        scan = Scan.of(root) if chosen.needs_walk else no_walk
        if isinstance(chosen, FilenameLayout) and scan.audio and chosen.detect(scan) is None:
            raise InputError(f"{root}: --layout {layout}: no audio file follows the {chosen.title} naming")
        return chosen, scan, [f"layout {layout} chosen with --layout"]

    kaldi = LAYOUTS["kaldi"].detect(no_walk)
    if kaldi is not None and kaldi.share >= 1.0:
        return LAYOUTS["kaldi"], no_walk, [f"detected kaldi: {kaldi.reason}"]
    scan = Scan.of(root)
    if not scan.audio:
        hint = " (wav.scp without utt2spk is not a Kaldi data folder)" if kaldi is not None else ""
        return LAYOUTS["plain"], scan, [f"no audio files found under {root}{hint}"]
    accepted, found = detect_named(scan)
    if accepted is not None:
        return LAYOUTS[accepted.layout], scan, [f"detected {accepted.layout}: {accepted.reason}"]
    if labels_file is not None or LAYOUTS["audiofolder"].detect(scan) is not None:
        return LAYOUTS["audiofolder"], scan, []
    if found and found[0].share >= AMBIGUOUS_SHARE and len(found) > 1 and found[1].share >= MIXED_SHARE:
        # Two known corpora in one folder: usually a mistake, and no layout can label both.
        raise InputError(
            f"{root}: layout not recognised: {describe_tried(found)}; pass --layout NAME "
            "(or --layout plain to go on without labels)"
        )
    if found and found[0].share >= AMBIGUOUS_SHARE:
        # Audio named partly like one corpus: always usable; go on without labels, and say how to get them.
        best = found[0]
        message = (
            f"{root}: {best.reason} ({best.share:.0%}), too few to read labels from the names; "
            f"using the plain layout (no labels). Pass --layout {best.layout} to read {best.layout} labels "
            "from the names that fit"
        )
        warn(message)
        return LAYOUTS["plain"], scan, [message]
    return LAYOUTS["plain"], scan, [f"no known layout recognised ({describe_tried(found)}): no labels"]


def open_corpus(
    root: str | Path,
    labels_file: str | Path | None = None,
    layout: str = "auto",
    *,
    allow_commands: bool = False,
    labels_sep: str | None = None,
) -> Corpus:
    """Find every audio file under `root`, sorted by utterance id, with labels attached.

    `layout` names a known corpus layout (see `LAYOUTS`) or "auto". When a
    known corpus also has a metadata table (or `labels_file` is given), the
    layout is still reported under its own name and the table's labels are
    merged on top: explicit labels win over what file names say.
    `allow_commands` lets a Kaldi wav.scp run piped shell commands;
    `labels_sep` is the separator of a CSV labels table (sniffed when None).
    A folder whose names only partly fit a known corpus is read as plain
    audio, with a warning on stderr naming the partial match.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root}: no such folder")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    labels_path = Path(labels_file) if labels_file else None
    if labels_path is not None and not labels_path.is_file():
        raise InputError(f"{labels_path}: no such labels file")

    chosen, scan, notes = _choose_layout(root, layout, labels_path)
    if chosen.name == "kaldi" and labels_path is not None:
        raise InputError(
            f"{labels_path}: --labels cannot be combined with a Kaldi data folder (use its utt2spk, spk2gender, text, utt2emo)"
        )
    if scan.stats.unreadable:
        folder, reason = scan.stats.unreadable[0]
        message = (
            f"{root}: {len(scan.stats.unreadable)} folder(s) cannot be read, their files are left out "
            f"(first: {folder}: {reason})"
        )
        warn(message)
        notes.append(message)
    result = chosen.load(scan, allow_commands=allow_commands, labels_file=labels_path, labels_sep=labels_sep)
    utterances = _text_names(result.utterances, root, notes)
    columns = list(result.label_columns)
    sources = [result.labels_source] if result.labels_source else []
    notes.extend(result.notes)

    # A named corpus with an explicit table: file-name labels first, the table on top.
    table = labels_path
    if table is None and isinstance(chosen, FilenameLayout):
        table = find_metadata(root)
    if table is not None and chosen.name not in ("audiofolder", "kaldi"):
        table_columns, unlisted, changed, absent = attach_table(utterances, table, root, sep=labels_sep)
        columns += [c for c in table_columns if c not in columns]
        sources.append(str(table))
        note = f"labels merged from {table.name} (its values win where both give one"
        note += f"; {changed} value(s) differed from the file names)" if changed else ")"
        notes.append(note)
        notes.extend(table_notes(table, unlisted, absent))

    _drop_missing_markers(utterances, columns)
    renames = _rename_reserved(columns)
    if any(old != new for old, new in renames.items()):
        for utt in utterances:
            for old, new in renames.items():
                if old != new and old in utt.labels:
                    utt.labels[new] = utt.labels.pop(old)
    seen: dict[str, str] = {}
    for utt in utterances:
        if utt.utt_id in seen:
            raise InputError(
                f"{root}: {seen[utt.utt_id]!r} and {utt.rel_path!r} give the same utterance id {utt.utt_id!r}"
            )
        seen[utt.utt_id] = utt.rel_path
    utterances.sort(key=lambda u: u.utt_id)
    return Corpus(
        root=root,
        utterances=utterances,
        label_columns=[renames[c] for c in columns],
        layout=chosen.name,
        labels_source=" + ".join(sources) if sources else None,
        ignored_files=scan.stats.ignored_files,
        notes=notes,
    )


def describe_corpus(corpus: Corpus, max_values: int = 20) -> dict:
    """A JSON-ready summary for `anoncli inspect`: layout, label columns, counts per label.

    Columns with more than `max_values` distinct values (transcripts, ages)
    are summarised by their number of distinct values only.
    """
    labels: dict[str, dict] = {}
    for column in corpus.label_columns:
        counts = Counter(u.labels.get(column) for u in corpus.utterances)
        missing = counts.pop(None, 0)
        entry: dict = {"distinct": len(counts), "missing": missing}
        if len(counts) <= max_values:
            entry["counts"] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        labels[column] = entry
    speakers = {u.speaker for u in corpus.utterances if u.speaker is not None}
    return {
        "root": str(corpus.root),
        "layout": corpus.layout,
        "utterances": len(corpus.utterances),
        "speakers": len(speakers),
        "label_columns": list(corpus.label_columns),
        "labels_source": corpus.labels_source,
        "ignored_files": corpus.ignored_files,
        "labels": labels,
        "notes": list(corpus.notes),
    }
