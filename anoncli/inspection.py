"""Summaries behind `anoncli inspect`, as plain dicts (the CLI renders them as a table or JSON)."""

from __future__ import annotations

import json
import os
from collections import Counter
from functools import cache
from itertools import repeat
from pathlib import Path
from typing import Any

import soundfile as sf

from anoncli.audio import audio_length, output_intact
from anoncli.corpus.walk import fs_name
from anoncli.errors import AnoncliError, InputError
from anoncli.evaluation import report_io
from anoncli.evaluation.linkability import passthrough
from anoncli.manifest.layout import manifest_dir, part_files, pending_files, read_selection
from anoncli.manifest.reader import manifest_config, manifest_files, read_manifest, read_parquet, read_parquet_schema
from anoncli.manifest.schema import SCORE_VALUE_COLUMNS, STATUS_OK
from anoncli.manifest.summary import badness, score_distributions
from anoncli.methods import method_class

# `inspect OUT --worst N --by NAME` on an output folder: report-style names of the manifest's score columns.
OUTPUT_ALIASES = {
    "asv.link": "link_cosine",
    "link": "link_cosine",
    "linkability": "link_cosine",
    "link.cosine": "link_cosine",
    "asv": "asv_score",
    "signal.stoi": "stoi",
    "signal.f0_r": "f0_r",
    "gender": "gender_p_anon",
    "emotion": "emotion_p_anon",
}


def describe(
    path: Path,
    labels: Path | None = None,
    layout: str = "auto",
    allow_commands: bool = False,
    worst: int | None = None,
    by: str = "asv.link",
    check: bool = False,
    labels_sep: str | None = None,
) -> dict[str, Any]:
    """What `anoncli inspect` reports on `path`: a manifest file, an evaluation report, an output folder or a corpus.

    Raises InputError (exit 2) for a missing path, a file that is not a .parquet
    manifest, or a corpus or manifest that cannot be read.
    """
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() != ".parquet":
            raise InputError(f"{path}: not a folder or a .parquet manifest")
        info = describe_manifest(path)
        if worst:
            info["worst"] = worst_outputs(path, worst, by)
        return info
    if report_io.is_report_dir(path):
        info: dict[str, Any] = {"kind": "report", "path": str(path), "summary": report_io.load_summary(path)}
        if worst:
            info["worst"] = report_io.worst_utterances(path, worst, by)
        return info
    if manifest_dir(path).is_dir() or any(path.glob("run*.json")):
        info = describe_output(path, check=check)
        if worst:
            info["worst"] = worst_outputs(path, worst, by)
        return info
    return describe_corpus(path, labels, layout, allow_commands, labels_sep)


def describe_corpus(
    root: Path, labels: Path | None, layout: str, allow_commands: bool, labels_sep: str | None = None
) -> dict[str, Any]:
    """A corpus's layout, files, hours (from headers; piped commands not run), speakers, sample rates and label columns."""
    from anoncli.corpus import describe_corpus as corpus_summary
    from anoncli.corpus import open_corpus

    corpus = open_corpus(root, labels, layout=layout, allow_commands=allow_commands, labels_sep=labels_sep)
    seconds, rates, unreadable, piped = 0.0, Counter(), 0, 0
    for utt in corpus.utterances:
        if getattr(utt, "command", None):
            piped += 1  # produced by a shell command: no header to read without running it
            continue
        try:
            rate, duration = audio_length(utt.path)  # a header without the length (FLAC from a pipe): decoded
        except Exception:
            unreadable += 1
            continue
        seconds += duration
        rates[rate] += 1
    summary = corpus_summary(corpus)
    return {
        "kind": "corpus",
        "path": str(root),
        "layout": corpus.layout,
        "labels_source": corpus.labels_source,
        "files": len(corpus),
        "hours": round(seconds / 3600, 4),
        "speakers": summary["speakers"],
        "sample_rates": {str(k): v for k, v in sorted(rates.items())},
        "unreadable_headers": unreadable,
        "piped_commands_not_measured": piped,
        "ignored_non_audio_files": corpus.ignored_files,
        "label_columns": summary["labels"],
        "notes": corpus.notes,
    }


def _manifest_summary(table) -> dict[str, Any]:
    rows = table.to_pydict()
    status = Counter(rows.get("status", []))
    ok_rows = [i for i, s in enumerate(rows.get("status", [])) if s == "ok"]
    reasons = Counter(e for e, s in zip(rows.get("error", []), rows.get("status", [])) if s != "ok")
    hours = sum(rows["duration_s"][i] or 0.0 for i in ok_rows) / 3600 if "duration_s" in rows else 0.0
    methods = sorted({m for m in rows.get("method", []) if m})
    summary = {
        "rows": table.num_rows,
        "ok": status.get("ok", 0),
        "failed": status.get("failed", 0),
        "method": methods[0] if len(methods) == 1 else methods,
        "hours": round(hours, 4),
        "failure_reasons": dict(reasons.most_common(10)),
    }
    scores = score_distributions(table)
    if scores:
        summary["scores"] = scores
        notes = Counter(n for n, s in zip(rows.get("score_notes", []), rows.get("status", [])) if s == "ok" and n)
        summary["rows_with_score_notes"] = sum(notes.values())
    return summary


def describe_manifest(path: Path) -> dict[str, Any]:
    """Row counts, statuses, hours, failure reasons and score distributions of one manifest file."""
    table = read_manifest(path)
    return {"kind": "manifest", "path": str(path), **_manifest_summary(table)}


def describe_output(out: Path, check: bool = False) -> dict[str, Any]:
    """An output folder's manifest summary plus its run records; `check` adds missing, duplicated and failed utterances across shards.

    A folder whose job stopped before its first batch was written (a manifest
    folder or run record, no manifest rows) reports 0 rows, and with `check`
    is incomplete: `expected` is then known only from a run record.
    """
    started_only = not manifest_files(out)
    table = None if started_only else read_manifest(out)
    info: dict[str, Any] = {
        "kind": "output",
        "path": str(out),
        **(_manifest_summary(table) if table is not None else {"rows": 0, "ok": 0, "failed": 0}),
    }
    runs = sorted(out.glob("run*.json"))
    audio_s = wall_s = 0.0
    config: dict[str, Any] = {}
    score_notes: set[str] = set()
    for run in runs:
        record = json.loads(run.read_text())
        config = config or record.get("config", {})
        score_notes.update(record.get("scores", {}).get("notes", []))
        audio_s += record.get("timings", {}).get("audio_s", 0.0)
        wall_s += record.get("timings", {}).get("wall_s", 0.0)
    config = config or manifest_config(out)  # no run.json (a killed first run): the part's stored configuration
    for started in sorted(out.glob(".run*-started.json")):  # killed before any part: the record a first run starts with
        config = config or json.loads(started.read_text()).get("config", {})
    if wall_s > 0 and audio_s > 0:  # a rerun that found nothing to do has no speed to report
        info["last_runs_realtime_factor"] = round(audio_s / wall_s, 1)
        info["last_runs_wall_s"] = round(wall_s, 2)
    info["parts"] = [p.name for p in part_files(out)]
    info["pending_batches"] = len(pending_files(out))
    if config:
        info["corpus"] = config.get("corpus")
        info["method_config"] = config.get("method_config")
    if score_notes:
        info["score_run_notes"] = sorted(set(score_notes))
    if check:
        info.update(check_output(out, config))
        if started_only:
            info["complete"] = False
            info["no_batch_written"] = True
    return info


def check_output(out: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Missing, duplicated and failed utterances across every shard of a run, and done outputs that keep the
    original voice (`passthrough_outputs`: manifest link_cosine >= PASSTHROUGH_COSINE; `complete` is then False)."""
    counts: Counter[str] = Counter()
    failed = set()
    broken: list[str] = []  # outputs of done rows that are gone or cannot be read
    kept_voice: dict[bool, list[str]] = {True: [], False: []}  # done rows with the original voice, by control or not
    for path in manifest_files(out):
        names = read_parquet_schema(path).names
        columns = ["utt_id", "status", *(c for c in ("output_path", "features_path") if c in names)]
        table = read_parquet(path, columns)
        _add_passthrough(path, names, kept_voice)
        outputs = zip(*(table.column(c).to_pylist() for c in columns[2:])) if len(columns) > 2 else repeat(())
        for utt, state, written in zip(table.column("utt_id").to_pylist(), table.column("status").to_pylist(), outputs):
            counts[utt] += 1
            if state != "ok":
                failed.add(utt)
            else:
                broken.extend(rel for rel in written if rel and not _readable(out / fs_name(rel)))
    duplicated = sorted(u for u, n in counts.items() if n > 1)
    unmerged = len(pending_files(out))  # batch files a finished job would have merged into its part
    missing: list[str] = []
    expected: dict[str, Any] = {}
    selection = read_selection(out) if config.get("files_from") is not None else None
    if selection is not None:
        # a --files-from run is complete when the files it was asked for are
        missing = sorted(u for u in set(selection) if u not in counts)
        expected = {
            "expected": len(set(selection)),
            "expected_from": f"selected by --files-from {config['files_from']} in the latest run",
        }
    elif config.get("corpus") and not config.get("pseudonymize"):
        from anoncli.corpus import open_corpus

        corpus = open_corpus(
            Path(config["corpus"]),
            config.get("labels_file"),
            layout=config.get("layout", "auto"),
            allow_commands=bool(config.get("allow_commands")),
            labels_sep=config.get("labels_sep"),
        )
        missing = sorted(u.utt_id for u in corpus.utterances if u.utt_id not in counts)
        expected = {
            "expected": len(corpus.utterances),
            "expected_from": f"the audio files of the corpus {config['corpus']}",
        }
        ids = {u.utt_id for u in corpus.utterances}
        # rows of files the corpus no longer holds (an input removed since, or another corpus's run): counted
        # apart, and a failure among them is not one of this corpus
        expected["rows_not_in_corpus"] = sum(1 for u in counts if u not in ids)
        failed &= ids
    return {
        **expected,
        "broken_outputs": len(broken),
        "broken_output_examples": broken[:10],
        "missing": len(missing),
        "missing_examples": missing[:10],
        "duplicated": len(duplicated),
        "duplicated_examples": duplicated[:10],
        "failed_utterances": len(failed),
        "unmerged_batches": unmerged,
        "passthrough_outputs": len(kept_voice[False]),
        "passthrough_examples": kept_voice[False][:10],
        **({"passthrough_control_outputs": len(kept_voice[True])} if kept_voice[True] else {}),
        "complete": not missing
        and not duplicated
        and not failed
        and not unmerged
        and not broken
        and not kept_voice[False],
    }


@cache
def _is_control(method: str | None) -> bool:
    """Whether a manifest's method keeps every voice by design (`Method.control`, e.g. identity): its outputs
    that keep the voice are counted apart, not a problem. An unknown name is not a control."""
    if not method:
        return False
    try:
        return bool(method_class(method).control)
    except AnoncliError:
        return False


def _add_passthrough(path: Path, names: list[str], found: dict[bool, list[str]]) -> None:
    """Append to `found[is_control]` the utterances of one manifest part whose done output keeps the original
    voice: a `link_cosine` (scored by anonymize) of PASSTHROUGH_COSINE or more."""
    if "link_cosine" not in names:
        return
    rows = read_parquet(path, ["utt_id", "status", "link_cosine", *(["method"] if "method" in names else [])])
    hits = passthrough([c if c is not None else float("nan") for c in rows.column("link_cosine").to_pylist()])
    methods = rows.column("method").to_pylist() if "method" in names else [None] * rows.num_rows
    for utt, state, method, hit in zip(
        rows.column("utt_id").to_pylist(), rows.column("status").to_pylist(), methods, hits
    ):
        if hit and state == STATUS_OK:
            found[_is_control(method)].append(utt)


def _readable(path: Path) -> bool:
    """Whether an output file is whole by the check a rerun makes (`output_intact`: a rerun redoes what fails
    it) and, for audio, also readable by soundfile."""
    if not output_intact(path):
        return False
    if path.suffix == ".npy":
        return True
    try:
        sf.info(os.fsencode(path))  # bytes: soundfile encodes a str strictly, which fails on escaped names
        return True
    except Exception:  # whatever the reader says, the file is not usable
        return False


def worst_outputs(out: Path, n: int = 10, by: str = "asv.link") -> list[dict]:
    """The `n` ok rows of an output folder (or one manifest .parquet) at the bad end of the score column `by`.

    `by` is a score column of the manifest (link_cosine, asv_score,
    gender_p_anon, stoi, f0_r, duration_ratio, level_change_db, ...) or a
    report-style alias (asv.link, asv, stoi, gender, emotion). Worst is the
    highest value (most linkable, attribute best recognised) except for stoi
    and f0_r (lowest) and duration_ratio / level_change_db (farthest from no
    change). Rows where the score is NaN are left out (their score_notes say why).
    """
    import math

    table = read_manifest(out)
    present = [c for c in SCORE_VALUE_COLUMNS if c in table.column_names]
    column = by if by in present else OUTPUT_ALIASES.get(by)
    if column not in present:
        choices = ", ".join(present) or "none: the run wrote no scores"
        raise InputError(f"--by {by!r}: no such score column in {out} (choose from: {choices})")
    keep = [
        c
        for c in ("utt_id", "source_path", "speaker", "status", column, "link_cosine", "stoi")
        if c in table.column_names
    ]
    rows = [
        r
        for r in table.select(list(dict.fromkeys(keep))).to_pylist()
        if r.get("status") == STATUS_OK and r.get(column) is not None and not math.isnan(r[column])
    ]
    rows.sort(key=lambda r: -badness(column, r[column]))
    picked = []
    for row in rows[: int(n)]:
        entry = {c: row[c] for c in ("utt_id", "source_path", "speaker") if c in row}
        entry.update(by=column, value=round(float(row[column]), 4))
        for extra in ("link_cosine", "stoi"):
            if extra != column and row.get(extra) is not None and not math.isnan(row[extra]):
                entry[extra] = round(float(row[extra]), 4)
        picked.append(entry)
    return picked
