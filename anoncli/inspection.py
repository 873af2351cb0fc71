"""Summaries behind `anoncli inspect`, as plain dicts (the CLI renders them as a table or JSON)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import soundfile as sf

from anoncli.errors import InputError
from anoncli.evaluation import report_io
from anoncli.manifest.layout import manifest_dir, part_files, pending_files
from anoncli.manifest.reader import manifest_files, read_manifest, read_parquet


def describe(path: Path, labels: Path | None = None, layout: str = "auto", allow_commands: bool = False,
             worst: int | None = None, by: str = "asv.link", check: bool = False) -> dict[str, Any]:
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() != ".parquet":
            raise InputError(f"{path}: not a folder or a .parquet manifest")
        return describe_manifest(path)
    if report_io.is_report_dir(path):
        info: dict[str, Any] = {"kind": "report", "path": str(path), "summary": report_io.load_summary(path)}
        if worst:
            info["worst"] = report_io.worst_utterances(path, worst, by)
        return info
    if manifest_dir(path).is_dir():
        return describe_output(path, check=check)
    return describe_corpus(path, labels, layout, allow_commands)


def describe_corpus(root: Path, labels: Path | None, layout: str, allow_commands: bool) -> dict[str, Any]:
    from anoncli.corpus import describe_corpus as corpus_summary
    from anoncli.corpus import open_corpus

    corpus = open_corpus(root, labels, layout=layout, allow_commands=allow_commands)
    seconds, rates, unreadable, piped = 0.0, Counter(), 0, 0
    for utt in corpus.utterances:
        if getattr(utt, "command", None):
            piped += 1  # produced by a shell command: no header to read without running it
            continue
        try:
            info = sf.info(str(utt.path))
        except Exception:
            unreadable += 1
            continue
        seconds += info.duration
        rates[info.samplerate] += 1
    summary = corpus_summary(corpus)
    return {
        "kind": "corpus", "path": str(root), "layout": corpus.layout, "labels_source": corpus.labels_source,
        "files": len(corpus), "hours": round(seconds / 3600, 4), "speakers": summary["speakers"],
        "sample_rates": {str(k): v for k, v in sorted(rates.items())}, "unreadable_headers": unreadable,
        "piped_commands_not_measured": piped, "ignored_non_audio_files": corpus.ignored_files,
        "label_columns": summary["labels"], "notes": corpus.notes,
    }


def _manifest_summary(table) -> dict[str, Any]:
    rows = table.to_pydict()
    status = Counter(rows.get("status", []))
    ok_rows = [i for i, s in enumerate(rows.get("status", [])) if s == "ok"]
    reasons = Counter(e for e, s in zip(rows.get("error", []), rows.get("status", [])) if s != "ok")
    hours = sum(rows["duration_s"][i] or 0.0 for i in ok_rows) / 3600 if "duration_s" in rows else 0.0
    methods = sorted({m for m in rows.get("method", []) if m})
    summary = {
        "rows": table.num_rows, "ok": status.get("ok", 0), "failed": status.get("failed", 0),
        "method": methods[0] if len(methods) == 1 else methods, "hours": round(hours, 4),
        "failure_reasons": dict(reasons.most_common(10)),
    }
    for score in ("link_cosine", "stoi", "f0_r"):
        values = [v for v in rows.get(score, []) if v is not None]
        if values:
            summary[f"mean_{score}"] = round(sum(values) / len(values), 4)
    return summary


def describe_manifest(path: Path) -> dict[str, Any]:
    table = read_manifest(path)
    return {"kind": "manifest", "path": str(path), **_manifest_summary(table)}


def describe_output(out: Path, check: bool = False) -> dict[str, Any]:
    table = read_manifest(out)
    info: dict[str, Any] = {"kind": "output", "path": str(out), **_manifest_summary(table)}
    runs = sorted(out.glob("run*.json"))
    audio_s = wall_s = 0.0
    config: dict[str, Any] = {}
    for run in runs:
        record = json.loads(run.read_text())
        config = config or record.get("config", {})
        audio_s += record.get("timings", {}).get("audio_s", 0.0)
        wall_s += record.get("timings", {}).get("wall_s", 0.0)
    if wall_s > 0:
        info["last_runs_realtime_factor"] = round(audio_s / wall_s, 1)
        info["last_runs_wall_s"] = round(wall_s, 2)
    info["parts"] = [p.name for p in part_files(out)]
    info["pending_batches"] = len(pending_files(out))
    if config:
        info["corpus"] = config.get("corpus")
        info["method_config"] = config.get("method_config")
    if check:
        info.update(check_output(out, config))
    return info


def check_output(out: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Missing, duplicated and failed utterances across every shard of a run."""
    counts: Counter[str] = Counter()
    failed = set()
    for path in manifest_files(out):
        table = read_parquet(path, ["utt_id", "status"])
        for utt, state in zip(table.column("utt_id").to_pylist(), table.column("status").to_pylist()):
            counts[utt] += 1
            if state != "ok":
                failed.add(utt)
    duplicated = sorted(u for u, n in counts.items() if n > 1)
    missing: list[str] = []
    if config.get("corpus") and not config.get("pseudonymize"):
        from anoncli.corpus import open_corpus

        corpus = open_corpus(Path(config["corpus"]), config.get("labels_file"), layout=config.get("layout", "auto"),
                             allow_commands=bool(config.get("allow_commands")), labels_sep=config.get("labels_sep"))
        missing = sorted(u.utt_id for u in corpus.utterances if u.utt_id not in counts)
    return {
        "missing": len(missing), "missing_examples": missing[:10], "duplicated": len(duplicated),
        "duplicated_examples": duplicated[:10], "failed_utterances": len(failed),
        "complete": not missing and not duplicated and not failed,
    }
