"""Held-out RDAL-M figures at each input level, from `anoncli evaluate` reports of `run_events.sh`.

    python recipes/rdalm/levels_table.py WORK -50 -30 -10 [--card anoncli/pretrained/rdalm/card.json]

Reads WORK/report<L>/summary.json (the `features` and `vad` sections) and, for the event
service head of each events corpus, reruns `evaluate_features`' `utility:event` probe on the
rows of that corpus (WORK/test<L>/mixtures, WORK/anon<L>). Prints a markdown table, writes
WORK/levels.json and, with --card, puts the figures under the card's `heldout_levels`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _get(node, *keys):
    for key in keys:
        node = node.get(key, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, (int, float)) else None


def level_figures(work: Path, level: str) -> dict:
    """The figures of one level: embedding, audio and VAD AUCs, SDR, event accuracy overall and per corpus."""
    from anoncli.evaluation.feature_probes import evaluate_features
    from anoncli.manifest.reader import read_manifest

    summary = json.loads((work / f"report{level}" / "summary.json").read_text())
    features, vad = summary.get("features", {}), summary.get("vad", {})
    out = {
        "level_dbfs": float(level),
        "n": _get(features, "utility", "event", "n"),
        "event_accuracy": _get(features, "utility", "event", "accuracy"),
        "event_chance": _get(features, "utility", "event", "chance"),
        "embedding_speech_auc": _get(features, "attacker", "speech", "auc"),
        "masked_audio_speech_auc": _get(features, "attacker_audio", "speech", "auc"),
        "unmasked_audio_speech_auc": _get(features, "attacker_unmasked", "speech", "auc"),
        "vad_masked_auc": _get(vad, "anonymized", "auc"),
        "vad_unmasked_auc": _get(vad, "original", "auc"),
        "vad_masked_fraction_with_speech": _get(vad, "anonymized", "speech_fraction_mean_with_speech"),
        "vad_unmasked_fraction_with_speech": _get(vad, "original", "speech_fraction_mean_with_speech"),
        "vad_masked_fraction_without_speech": _get(vad, "anonymized", "speech_fraction_mean_without_speech"),
        "vad_unmasked_fraction_without_speech": _get(vad, "original", "speech_fraction_mean_without_speech"),
        "sdr_db_with_speech": _get(features, "sdr", "sdr_db_mean_with_speech"),
        "sdr_input_db_with_speech": _get(features, "sdr", "sdr_input_db_mean_with_speech"),
    }
    frame = read_manifest(work / f"anon{level}").to_pandas()
    out["event_accuracy_by_corpus"] = {}
    for corpus in sorted(frame["event_corpus"].dropna().unique()):
        _, result = evaluate_features(
            work / f"test{level}" / "mixtures",
            work / f"anon{level}",
            frame[frame["event_corpus"] == corpus],
            probes=["utility:event"],
        )
        head = result.get("utility:event", result.get("utility", {}))
        head = head.get("event", head) if isinstance(head, dict) else {}
        out["event_accuracy_by_corpus"][str(corpus)] = {
            "accuracy": head.get("accuracy"),
            "chance": head.get("chance"),
            "n": head.get("n"),
        }
    return out


def _fmt(value, digits=3):
    return "–" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("levels", nargs="+")
    parser.add_argument("--card", type=Path, default=None)
    args = parser.parse_args()
    figures = [level_figures(args.work, level) for level in args.levels]
    (args.work / "levels.json").write_text(json.dumps(figures, indent=1))
    corpora = sorted({c for f in figures for c in f["event_accuracy_by_corpus"]})
    print(
        "| input level | event acc. (all) | "
        + " | ".join(f"event acc. {c}" for c in corpora)
        + " | speech AUC embedding | masked audio | unmasked | silero-vad masked | silero-vad unmasked |"
        + " SDR with speech (input) |"
    )
    print("|" + "---|" * (8 + len(corpora)))
    for f in figures:
        per = [_fmt(f["event_accuracy_by_corpus"][c]["accuracy"]) for c in corpora]
        print(
            f"| {f['level_dbfs']:.0f} dBFS | {_fmt(f['event_accuracy'])} | "
            + " | ".join(per)
            + f" | {_fmt(f['embedding_speech_auc'])} | {_fmt(f['masked_audio_speech_auc'])}"
            f" | {_fmt(f['unmasked_audio_speech_auc'])} | {_fmt(f['vad_masked_auc'])} | {_fmt(f['vad_unmasked_auc'])}"
            f" | {_fmt(f['sdr_db_with_speech'], 2)} ({_fmt(f['sdr_input_db_with_speech'], 2)}) |"
        )
    if args.card:
        card = json.loads(args.card.read_text())
        card["heldout_levels"] = figures
        args.card.write_text(json.dumps(card, indent=1) + "\n")


if __name__ == "__main__":
    main()
