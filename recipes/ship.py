"""Copy a source-filter training run's exported model into the package, with held-out figures on its card.

`anoncli train --method M-sf ... --config recipes/M/cpu.json` writes RUN/shipped/
(model.safetensors + card.json). This script copies both to
anoncli/pretrained/M/ and adds, under "heldout", the figures of an
`anoncli evaluate` report on speakers the model never saw (summary.json),
plus the command lines that produced them.

Usage: python recipes/ship.py RUN --report REPORT [--report-command "..."] [--anonymize-command "..."]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

FIGURES = ("gender", "emotion", "speaker")


def heldout_figures(summary: dict) -> dict:
    out: dict = {}
    for label in FIGURES:
        if label in summary:
            out[label] = {
                attacker: {k: summary[label][attacker].get(k) for k in ("acc", "uar", "chance")}
                for attacker in ("original", "ignorant", "informed")
                if attacker in summary[label]
            }
    if "asv" in summary:
        out["asv"] = {
            cond: {k: summary["asv"][cond].get(k) for k in ("EER", "eer")}
            for cond in ("OO", "OA", "AA")
            if cond in summary["asv"]
        }
    signal = summary.get("signal", {})
    if signal:
        out["signal"] = {k: signal.get(k) for k in ("stoi", "f0_r") if k in signal}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--report-command", default="")
    parser.add_argument("--anonymize-command", default="")
    args = parser.parse_args()
    card = json.loads((args.run / "shipped" / "card.json").read_text())
    summary = json.loads((args.report / "summary.json").read_text())
    card["heldout"] = {
        "figures": heldout_figures(summary),
        "anonymize": args.anonymize_command,
        "evaluate": args.report_command,
        "speakers": card["data"].get("excluded_speakers", []),
    }
    target = Path(__file__).resolve().parents[1] / "anoncli" / "pretrained" / card["method"]
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.run / "shipped" / "model.safetensors", target / "model.safetensors")
    (target / "card.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    print(target)


if __name__ == "__main__":
    main()
