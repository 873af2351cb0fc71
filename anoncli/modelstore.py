"""The local model folder: where `anoncli train` registers a model and `anonymize` finds it.

Layout: `$ANONCLI_MODELS/<method>/` (default `~/.cache/anoncli/models/<method>/`)
holding `model.pt` (the best checkpoint) and `model.json` (its card). A run
folder given with `--checkpoint RUN` is used as it is (its `checkpoints/best.pt`,
else `checkpoints/last.pt`, else a `model.pt`, else a `model.safetensors` with
its `card.json`: the shipped form, e.g. a copy of `anoncli/pretrained/<method>/`);
a path to a `.pt` or `.safetensors` file also works.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from anoncli.atomic import atomic_path, atomic_write_json
from anoncli.errors import AnoncliError

MODEL_FILE = "model.pt"
CARD_FILE = "model.json"
# Models shipped inside the package: anoncli/pretrained/<method>/model.safetensors + card.json.
SHIPPED_WEIGHTS = "model.safetensors"
SHIPPED_CARD = "card.json"
# The checkpoint format `anoncli.training.loop` writes and `load_model` returns (older ones are converted).
FORMAT_VERSION = 2


def store_root() -> Path:
    """The local model store: $ANONCLI_MODELS, else ~/.cache/anoncli/models."""
    env = os.environ.get("ANONCLI_MODELS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "anoncli" / "models"


def method_dir(method: str) -> Path:
    """The store folder of one method's registered model."""
    return store_root() / method


def checkpoint_in_run(run_dir: Path) -> Path | None:
    """The checkpoint a folder offers: a run's best.pt, else its last.pt, else a model.pt, else a
    model.safetensors with its card.json beside it (the shipped form); None when it holds none of them."""
    for candidate in (run_dir / "checkpoints" / "best.pt", run_dir / "checkpoints" / "last.pt", run_dir / MODEL_FILE):
        if candidate.is_file():
            return candidate
    shipped = run_dir / SHIPPED_WEIGHTS
    if shipped.is_file() and (run_dir / SHIPPED_CARD).is_file():
        return shipped
    return None


def register(method: str, run_dir: str | os.PathLike) -> Path:
    """Copy a run's best checkpoint and card into the store; return the stored model path."""
    run_dir = Path(run_dir)
    source = checkpoint_in_run(run_dir)
    if source is None or source.suffix != ".pt":  # the store holds checkpoints (model.pt), not the shipped form
        raise AnoncliError(f"{run_dir}: no checkpoint to register (expected checkpoints/best.pt)")
    target_dir = method_dir(method)
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / MODEL_FILE
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    card_source = run_dir / CARD_FILE
    card = json.loads(card_source.read_text()) if card_source.is_file() else {}
    card["registered_from"] = str(run_dir.resolve())
    atomic_write_json(target_dir / CARD_FILE, card)
    return target


def missing_message(method: str) -> str:
    """The one-line error for a method with no trained model, naming the commands that provide one."""
    return f"no trained {method} model: run `anoncli train --method {method} CORPUS --out RUN` or pass --checkpoint RUN"


def shipped_dir(method: str) -> Path:
    """The folder of a model shipped inside the package: anoncli/pretrained/<method>."""
    return Path(__file__).resolve().parent / "pretrained" / method


def shipped_model(method: str) -> Path | None:
    """The shipped model.safetensors of `method` when it and its card.json exist, else None."""
    path = shipped_dir(method) / SHIPPED_WEIGHTS
    return path if path.is_file() and (path.parent / SHIPPED_CARD).is_file() else None


def load_shipped(path: str | os.PathLike) -> dict:
    """A shipped model (safetensors weights + card.json beside it) as a current-format checkpoint state:
    method, config, classes, attribute, models {module: state dict}, trainer_config and data_fingerprint
    (from the card when it records them), sha256 of the weights."""
    from anoncli.models.safetensors_io import load_file

    path = Path(path)
    try:
        card = json.loads((path.parent / SHIPPED_CARD).read_text())
        model = card["model"]
    except (OSError, ValueError, KeyError) as err:
        raise AnoncliError(f"{path.parent / SHIPPED_CARD}: missing or incomplete model card ({err})") from None
    tensors, _ = load_file(path)
    modules: dict[str, dict] = {}
    for key, value in tensors.items():
        module, _, name = key.partition(".")
        modules.setdefault(module, {})[name] = value
    return {
        "format_version": FORMAT_VERSION,
        "method": card.get("method"),
        "config": model["config"],
        "classes": model["classes"],
        "attribute": model.get("attribute", ""),
        "models": modules,
        "trainer_config": card.get("config") if isinstance(card.get("config"), dict) else {},
        "data_fingerprint": card.get("data_fingerprint"),
        "sha256": _sha256(path),
    }


def file_sha256(path: str | os.PathLike) -> str | None:
    """sha256 of a model file, or None when it is not a file (an in-memory model)."""
    return _sha256(Path(path)) if Path(path).is_file() else None


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def list_models() -> list[dict]:
    """Models found: the local store's (source "local") and the package's shipped ones (source "shipped"),
    one dict each (method, source, path, sha256, card)."""
    root = store_root()
    found = []
    if root.is_dir():
        for method_folder in sorted(p for p in root.iterdir() if p.is_dir()):
            model = method_folder / MODEL_FILE
            if not model.is_file():
                continue
            card_path = method_folder / CARD_FILE
            try:
                card = json.loads(card_path.read_text()) if card_path.is_file() else {}
            except (OSError, ValueError):
                card = {}
            found.append(
                {
                    "method": method_folder.name,
                    "source": "local",
                    "path": str(model),
                    "sha256": _sha256(model),
                    "card": card,
                }
            )
    shipped_root = shipped_dir("_").parent
    if shipped_root.is_dir():
        for method_folder in sorted(p for p in shipped_root.iterdir() if p.is_dir()):
            weights = shipped_model(method_folder.name)
            if weights is not None:
                try:
                    card = json.loads((method_folder / SHIPPED_CARD).read_text())
                except (OSError, ValueError):
                    card = {}
                found.append(
                    {
                        "method": method_folder.name,
                        "source": "shipped",
                        "path": str(weights),
                        "sha256": _sha256(weights),
                        "card": card,
                    }
                )
    return found


def find(method: str, checkpoint: str | os.PathLike | None = None) -> Path:
    """The checkpoint file to load for `method`: from `checkpoint` (file or run folder), else the local
    store, else the model shipped in the package (`anoncli/pretrained/<method>/model.safetensors`)."""
    if checkpoint:
        path = Path(checkpoint).expanduser()
        if path.is_file():
            return path
        if path.is_dir():
            found = checkpoint_in_run(path)
            if found is None:
                raise AnoncliError(
                    f"--checkpoint {path}: no checkpoints/best.pt, checkpoints/last.pt, model.pt, "
                    f"or {SHIPPED_WEIGHTS} with its {SHIPPED_CARD} in it"
                )
            return found
        raise AnoncliError(f"--checkpoint {path}: no such file or folder")
    stored = method_dir(method) / MODEL_FILE
    if stored.is_file():
        return stored
    shipped = shipped_model(method)
    if shipped is not None:
        return shipped
    raise AnoncliError(missing_message(method))


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint safely (`weights_only=True`: tensors and plain containers, no pickled code).

    `map_location` is a device name or torch.device. Raises AnoncliError for a
    missing file or one torch cannot read (damaged, or not a checkpoint).
    """
    import torch

    try:
        return torch.load(Path(path), map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise AnoncliError(f"{path}: no such checkpoint") from None
    except Exception as err:  # pickle/zip errors of a damaged or foreign file
        # torch's own text suggests weights_only=False, which would run code from the file: never repeated here
        raise AnoncliError(
            f"{path}: cannot load checkpoint: damaged, or not one anoncli wrote "
            f"({type(err).__name__}); retrain it, or remove it"
        ) from None


def load_model(path: str | os.PathLike, map_location="cpu") -> dict:
    """The one loader of anoncli models: a shipped `model.safetensors` (+ `card.json`) or a `.pt`
    checkpoint of any format anoncli wrote, as a current-format dict (see `upgrade_checkpoint`).

    Raises AnoncliError for a missing, damaged or foreign file, or one of a newer format.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_shipped(path)
    return upgrade_checkpoint(load_checkpoint(path, map_location), path)


def upgrade_checkpoint(state: dict, path: str | os.PathLike = "checkpoint") -> dict:
    """A loaded checkpoint in the current format (`FORMAT_VERSION`); older ones are converted.

    The current format (written by `anoncli.training.loop`) holds `format_version`,
    `method`, `models` ({module: state dict}), `config` (the settings that
    describe the networks), `trainer_config` (every training setting),
    `data_fingerprint` (of the training utterances), and for attribute models
    `classes` and `attribute`. Format 1 (every trainer its own keys: `models` or
    `train_models` or one key per network, a `train_config_json` string) is
    converted: its networks are gathered under `models` (the original keys are
    kept), its training settings become `trainer_config`, and `data_fingerprint`
    is None (not recorded then). A format newer than this anoncli reads is refused.
    """
    if not isinstance(state, dict):
        raise AnoncliError(f"{path}: not an anoncli checkpoint (a {type(state).__name__}, not a dict)")
    version = state.get("format_version")
    if version is None:
        return _convert_format_1(state)
    if int(version) > FORMAT_VERSION:
        raise AnoncliError(
            f"{path}: checkpoint format {version} is newer than this anoncli reads "
            f"({FORMAT_VERSION}); upgrade anoncli to load it"
        )
    return state


def _is_state_dict(value) -> bool:
    import torch

    return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def _convert_format_1(state: dict) -> dict:
    out = dict(state)
    if isinstance(state.get("train_models"), dict):  # the source-filter trainer: every module here
        models = {**state["train_models"], **state.get("models", {})}
    elif isinstance(state.get("models"), dict):
        models = dict(state["models"])
    else:  # one top-level key per network (MelGAN, Siamese, RDAL-M)
        models = {
            key: value
            for key, value in state.items()
            if _is_state_dict(value) and not key.startswith("opt") and not key.endswith("_opt")
        }
    out["models"] = models
    if not out.get("method") and {"generator", "discriminator"} <= set(models) and "opt_g" in state:
        out["method"] = "melgan"  # the MelGAN trainer did not write its name
    try:
        trainer_config = json.loads(state["train_config_json"]) if "train_config_json" in state else None
    except ValueError:
        trainer_config = None
    out["trainer_config"] = trainer_config if isinstance(trainer_config, dict) else dict(state.get("config") or {})
    out.setdefault("config", {})
    out["data_fingerprint"] = None
    out["format_version"] = FORMAT_VERSION
    out["converted_from"] = int(state.get("format", 1))
    return out


def load_method_checkpoint(method: str, checkpoint: str | os.PathLike | None = None) -> tuple[Path, dict]:
    """Find `method`'s checkpoint (given, or in the model store), load it safely (`load_model`), and check
    it is one of `method` (a PSEGAN run passed to --method gengan is a user error, not a crash later)."""
    path = find(method, checkpoint)
    state = load_model(path, "cpu")
    check_kind(path, state, method)
    return path, state


def check_kind(path: str | os.PathLike, state: dict, method: str) -> None:
    """Raise AnoncliError when the loaded checkpoint `state` is not one of `method`."""
    found = state.get("method") if isinstance(state, dict) else None
    if found != method:
        what = f"{'an' if found[:1] in 'aeiou' else 'a'} {found} checkpoint" if found else "not an anoncli model"
        raise AnoncliError(f"{path}: {what}, not {'an' if method[:1] in 'aeiou' else 'a'} {method} one")
