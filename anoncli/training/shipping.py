"""Turn a training run into a model shipped in the package: `anoncli/pretrained/<method>/`.

    python -m anoncli.training.shipping RUN DEST --method siamese --modules net,head \\
        --command "anoncli train ..." --data data.json

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

from anoncli.modelstore import load_checkpoint
from anoncli.training.common import atomic_write_json

MAX_BYTES = 20 * 1024 * 1024


def ship(run: Path, dest: Path, method: str, modules: list[str], command: str, data: dict,
         attribute: str = "", labels: dict | None = None) -> dict:
    """Write DEST/model.safetensors and DEST/card.json from RUN; return the card.

    Args:
        run: the run folder (checkpoints/best.pt or last.pt, model.json).
        dest: output folder.
        method: method name the card declares.
        modules: checkpoint entries (state dicts) to ship, e.g. ["net", "head"].
        command: the training command (documentation).
        data: {"corpus", "licence", ...}; "train_speakers" (default: the checkpoint's or the run
            card's) and "excluded_speakers" (default: the run card's held-out speakers) are filled in.
        attribute: the private attribute.
        labels: {"utility": ..., "private": ...} the method's default labels.
    Raises ValueError when the weights would exceed 20 MB.
    """
    from anoncli.models.safetensors_io import save_file

    run, dest = Path(run), Path(dest)
    checkpoint = run / "checkpoints" / "best.pt"
    state = load_checkpoint(checkpoint if checkpoint.is_file() else run / "checkpoints" / "last.pt", "cpu")
    card_in = json.loads((run / "model.json").read_text())
    tensors = {f"{module}.{name}": value.float() if value.is_floating_point() else value
               for module in modules for name, value in state[module].items()}
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    if size > MAX_BYTES:
        raise ValueError(f"{run}: {size / 1e6:.1f} MB of weights, more than the 20 MB a shipped model may have")
    dest.mkdir(parents=True, exist_ok=True)
    save_file(tensors, dest / "model.safetensors", metadata={"method": method})
    config = dict(state["config"])
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
        "seed": int(config.get("seed", 0)),
        "heldout": card_in.get("held_out", {}),
        "validation": card_in.get("validation", {}),
        "train_seconds": card_in.get("train_seconds"),
        "paper": card_in.get("paper", {}),
    }
    atomic_write_json(dest / "card.json", card)
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m anoncli.training.shipping", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--method", required=True)
    parser.add_argument("--modules", required=True, help="comma-separated checkpoint entries to ship")
    parser.add_argument("--command", required=True)
    parser.add_argument("--data", type=Path, required=True, help="JSON file with the card's data section")
    parser.add_argument("--attribute", default="")
    parser.add_argument("--labels", default="", help="utility=COL,private=COL[,within=COL]")
    args = parser.parse_args(argv)
    labels = dict(part.split("=", 1) for part in args.labels.split(",") if "=" in part)
    card = ship(args.run, args.dest, args.method, args.modules.split(","), args.command,
                json.loads(args.data.read_text()), args.attribute, labels)
    print(json.dumps({"dest": str(args.dest), "heldout": card["heldout"]}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
