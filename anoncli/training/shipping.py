"""Turn a training run into a model shipped in the package: `anoncli/pretrained/<method>/`.

    python -m anoncli.training.shipping RUN DEST --method siamese --modules net,head \\
        --command "anoncli train ..." --data data.json

(`--report NAME=REPORT` later adds held-out `anoncli evaluate` figures.)
Writes DEST/model.safetensors (the named modules' weights, keys
"<module>.<parameter>", float32 and integer buffers as they are) and
DEST/card.json: method, model {config, classes, attribute}, data (corpora,
licences, training and held-out speakers), the figures of the run's model
card (held-out and validation), the command and seed. `modelstore` finds the
pair when no local model exists; `load_shipped` reads it back as a checkpoint
state {"config", "classes", "models": {module: state dict}}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from anoncli.modelstore import load_model
from anoncli.training.common import atomic_write_json

MAX_BYTES = 20 * 1024 * 1024


def ship(
    run: Path,
    dest: Path,
    method: str,
    modules: list[str],
    command: str,
    data: dict,
    attribute: str = "",
    labels: dict | None = None,
    settings: dict | None = None,
    data_command: str = "",
) -> dict:
    """Write DEST/model.safetensors and DEST/card.json from RUN; return the card.

    Args:
        run: the run folder (checkpoints/best.pt or last.pt, model.json).
        dest: output folder.
        method: method name the card declares.
        modules: the checkpoint's `models` to ship, e.g. ["net", "head"].
        command: the training command (documentation); data_command: how its data was prepared.
        data: {"corpus", "licence", ...}; "train_speakers" (default: the checkpoint's or the run
            card's) and "excluded_speakers" (default: the run card's held-out speakers) are filled in.
        attribute: the private attribute.
        labels: {"utility": ..., "private": ...} the method's default labels.
        settings: config entries set for the shipped model (e.g. {"noise": 0.05}, a release
            setting chosen on validation speakers); recorded under "release_settings".
    Raises ValueError when the weights would exceed 20 MB.
    """
    from anoncli.models.safetensors_io import save_file

    run, dest = Path(run), Path(dest)
    checkpoint = run / "checkpoints" / "best.pt"
    state = load_model(checkpoint if checkpoint.is_file() else run / "checkpoints" / "last.pt", "cpu")
    card_in = json.loads((run / "model.json").read_text())
    tensors = {
        f"{module}.{name}": value.float() if value.is_floating_point() else value
        for module in modules
        for name, value in state["models"][module].items()
    }
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    if size > MAX_BYTES:
        raise ValueError(f"{run}: {size / 1e6:.1f} MB of weights, more than the 20 MB a shipped model may have")
    dest.mkdir(parents=True, exist_ok=True)
    save_file(tensors, dest / "model.safetensors", metadata={"method": method})
    config = {**dict(state["config"]), **(settings or {})}
    data = dict(data)
    # speakers: every one the run looked at (training and model selection), and the held-out ones
    data.setdefault("train_speakers", list(state.get("train_speakers") or card_in.get("train_speakers") or []))
    data.setdefault("excluded_speakers", list(card_in.get("held_out_speakers") or []))
    if "train_speakers" in state:
        config["train_speakers"] = list(state["train_speakers"])
    card = {
        "method": method,
        "model": {"config": config, "classes": list(state["classes"]), "attribute": attribute},
        "labels": labels or {},
        "data": data,
        "config": config,
        "command": command,
        "data_command": data_command,
        "release_settings": settings or {},
        "seed": int(state.get("seed", config.get("seed", 0))),
        "data_fingerprint": state.get("data_fingerprint"),
        "heldout": card_in.get("held_out", {}),
        "validation": card_in.get("validation", {}),
        "train_seconds": card_in.get("train_seconds"),
        "paper": card_in.get("paper", {}),
    }
    atomic_write_json(dest / "card.json", card)
    return card


def add_reports(dest: Path, reports: dict[str, Path], commands: str = "") -> dict:
    """Put the `features` section of `anoncli evaluate` reports (summary.json, held-out speakers) on
    DEST/card.json under "heldout" and "heldout_evaluate" {name: {utility, attacker, ...}} (the
    trainer's own report moves to "heldout_training_report"); return the card."""
    card = json.loads((Path(dest) / "card.json").read_text())
    if "heldout_evaluate" not in card:
        # the trainer's report measured the model as trained; the evaluate figures measure it as shipped
        card["heldout_training_report"] = card.get("heldout", {})
        card["heldout"] = {}
    section = card.setdefault("heldout_evaluate", {})
    for name, report in reports.items():
        features = json.loads((Path(report) / "summary.json").read_text()).get("features", {})
        section[name] = {k: v for k, v in features.items() if k != "probes"}
        card["heldout"][name] = section[name]
    if commands:
        section["commands"] = commands
    atomic_write_json(Path(dest) / "card.json", card)
    return card


def main(argv: list[str] | None = None) -> int:
    """Command line of `python -m anoncli.training.shipping`: write a run's model.safetensors and card.json into DEST; returns 0."""
    parser = argparse.ArgumentParser(prog="python -m anoncli.training.shipping", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--method")
    parser.add_argument("--modules", help="comma-separated checkpoint entries to ship")
    parser.add_argument("--command", help="the `anoncli train` command")
    parser.add_argument("--data-command", default="", help="the command that prepared the training data")
    parser.add_argument("--data", type=Path, help="JSON file with the card's data section")
    parser.add_argument("--attribute", default="")
    parser.add_argument("--labels", default="", help="utility=COL,private=COL[,within=COL]")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=NUMBER",
        help="a config entry of the shipped model (numbers), e.g. noise=0.05",
    )
    parser.add_argument(
        "--report",
        action="append",
        default=[],
        metavar="NAME=REPORT",
        help="only add the features figures of an evaluate report to an already shipped card",
    )
    parser.add_argument("--report-commands", default="", help="the anonymize/evaluate commands of --report")
    args = parser.parse_args(argv)
    if args.report:
        card = add_reports(args.dest, dict(item.split("=", 1) for item in args.report), args.report_commands)
        print(json.dumps({"dest": str(args.dest), "heldout_evaluate": card["heldout_evaluate"]}, default=str))
        return 0
    labels = dict(part.split("=", 1) for part in args.labels.split(",") if "=" in part)
    settings = {k: float(v) for k, v in (item.split("=", 1) for item in args.set)}
    card = ship(
        args.run,
        args.dest,
        args.method,
        args.modules.split(","),
        args.command,
        json.loads(args.data.read_text()),
        args.attribute,
        labels,
        settings,
        args.data_command,
    )
    print(json.dumps({"dest": str(args.dest), "heldout": card["heldout"]}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
