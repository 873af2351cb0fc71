"""Figures of an `anoncli evaluate` report restricted to the speakers held out from training.

The attribute attackers of `anoncli evaluate` predict every utterance with a
fold that did not train on its speaker (for `speaker`: closed-set folds
within speakers), so restricting scores.parquet to some speakers gives their
figures without retraining. ASV: EER over the trials whose test utterance is
from those speakers (enrolment models of every speaker).

Usage: python recipes/gengan/heldout.py REPORT --speakers 09,11 [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd


def eer(target: np.ndarray, nontarget: np.ndarray) -> float:
    scores = np.concatenate([target, nontarget])
    labels = np.concatenate([np.ones(len(target)), np.zeros(len(nontarget))])
    order = np.argsort(-scores, kind="stable")
    labels = labels[order]
    fa = np.cumsum(1 - labels) / max(1, len(nontarget))
    miss = 1 - np.cumsum(labels) / max(1, len(target))
    index = int(np.argmin(np.abs(fa - miss)))
    return float(100 * (fa[index] + miss[index]) / 2)


def normalised(accuracy_pct: float, classes: int) -> float:
    chance = 100.0 / classes
    return float(np.clip(100 * (1 - abs(accuracy_pct - chance) / (100 - chance)), 0, 100))


def figures(report: Path, speakers: list[str]) -> dict:
    scores = pd.read_parquet(report / "scores.parquet")
    scores["speaker"] = scores["speaker"].astype(str)
    held = scores[scores["speaker"].isin(speakers)]
    out: dict = {"speakers": speakers, "utterances": int(len(held))}
    for column in ("gender", "emotion", "speaker"):
        for attacker in ("original", "ignorant", "informed"):
            key = f"{column}.{attacker}.pred"
            if key not in held:
                continue
            valid = held[key].notna()
            accuracy = 100 * float((held.loc[valid, key].astype(str) == held.loc[valid, column].astype(str)).mean())
            out[f"{column}.{attacker}.acc"] = round(accuracy, 2)
            classes = scores[column].nunique()
            if column != "speaker":
                out[f"{column}.{attacker}.norm"] = round(normalised(accuracy, classes), 2)
    for key in ("signal.stoi", "signal.f0_corr", "signal.pitch_corr"):
        if key in held:
            out[key] = round(float(held[key].mean()), 4)
    trials_path = report / "trials.parquet"
    if trials_path.exists():
        trials = pd.read_parquet(trials_path)
        held_ids = set(held["utt_id"])
        for condition in sorted(trials["condition"].unique()):
            sub = trials[(trials["condition"] == condition) & trials["utt_id"].isin(held_ids)]
            if len(sub) and sub["target"].any() and (~sub["target"]).any():
                value = eer(sub.loc[sub["target"], "score"].to_numpy(), sub.loc[~sub["target"], "score"].to_numpy())
                out[f"asv.{condition}.EER"] = round(value, 2)
                out[f"asv.{condition}.eer"] = round(100 - 2 * abs(value - 50), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--speakers", required=True, help="comma-separated speaker ids")
    args = parser.parse_args()
    print(json.dumps(figures(args.report, [s.strip() for s in args.speakers.split(",")]), indent=2))


if __name__ == "__main__":
    main()
