"""The one training loop (`fit`) every trainer runs, and the `Trainer` class a trainer fills in.

In the spirit of SpeechBrain's `Brain.fit` and Lightning's hooks: the loop owns
epochs and steps, the seeding of every random draw, optimiser steps with
gradient clipping, validation and the choice of the best checkpoint, atomic
checkpoints (`last.pt`, `best.pt`) and resume, early stop, the time budget,
progress lines, `log.jsonl` / `log.parquet`, the model card and registration.
A trainer only declares what it trains.

Writing a trainer
-----------------
Subclass `TrainConfig` with the trainer's settings (typed fields; `--param`
converts by type, `anoncli.params`) and `Trainer` with:

* `method` (the model kind written in the checkpoint, what `anonymize
  --method` loads), `config_class`, `presets` ({"quick": Config(...),
  "full": Config(...)}: instances of `config_class`) and `selection`
  (validation metric, "max" or "min");
* `setup()`: read the data and build the networks and optimisers (the
  corpus is `self.options.open_corpus()`, the device `self.device`, the run
  folder `self.run`); set `self.data_fingerprint = data_fingerprint(utts)`;
* `modules()` -> {name: nn.Module} (all of them are checkpointed) and
  `optimizers()` -> {name: Optimizer};
* `batches(epoch)` -> an iterable of batches (draw randomness from
  `self.rng`, a seeded torch.Generator the loop checkpoints) and
  `train_step(batch)` -> {loss name: float}, calling `self.optimize(name, loss)`
  for each optimiser (zero_grad, backward, clipping to `grad_clip`, step);
* `validate()` -> {figure: float} (run under torch.no_grad, modules in eval
  mode, with the training random state saved and restored around it);
* optionally `start()` (a fresh run only: warm-ups, a frozen attacker),
  `extra_state()` / `load_extra_state(state)` (more to checkpoint),
  `model_info()` (the keys inference reads: `config`, `classes`,
  `attribute`, ...), `card(result)` and `finish(result)`.

Register it in `training.TRAINERS` as `"name": "anoncli.training.<module>:<Class>"`;
`anoncli train --method name` then resolves its config (preset or `--config
FILE.json`, `--param`, `--epochs`, `--batch-size`, `--max-minutes`) and runs
`fit`. Example (a complete, runnable trainer)::

    @dataclass
    class ToyConfig(TrainConfig):
        width: int = 8
        lr: float = 1e-3

    class ToyTrainer(Trainer):
        method = "toy"
        config_class = ToyConfig
        presets = {"quick": ToyConfig(epochs=2), "full": ToyConfig(epochs=50, width=64)}
        selection = ("val_loss", "min")

        def setup(self):
            self.net = torch.nn.Linear(4, self.config.width)
            self.opt = torch.optim.Adam(self.net.parameters(), lr=self.config.lr)

        def modules(self):
            return {"net": self.net}

        def optimizers(self):
            return {"net": self.opt}

        def batches(self, epoch):
            return (torch.randn(8, 4, generator=self.rng) for _ in range(10))

        def train_step(self, x):
            loss = self.net(x.to(self.device)).pow(2).mean()
            self.optimize("net", loss)
            return {"loss": loss.item()}

        def validate(self):
            return {"val_loss": float(self.net(torch.ones(1, 4, device=self.device)).pow(2).mean())}

Resume
------
Rerunning the same command continues after the last complete epoch of
`RUN/checkpoints/last.pt`: networks, optimisers, loop counters, the best
figure so far and every random state (python, numpy, torch CPU and CUDA, the
data generator `self.rng`, and the trainer's `extra_state`) are restored, so
the resumed run's weights equal those of an uninterrupted run with the same
seed, bit for bit, on the same device. Settings in `TrainConfig.run_settings`
(how long and where to run) may change on resume; any other change, or other
training data (`data_fingerprint`), is refused.

The checkpoint format (`modelstore.FORMAT_VERSION`, read by `modelstore.load_model`)
is described in `checkpoint_state`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from anoncli import modelstore
from anoncli.errors import AnoncliError
from anoncli.params import from_params
from anoncli.progress import progress_bar
from anoncli.progress import write as progress_line
from anoncli.training import TrainOptions
from anoncli.training.common import RunFolder, limit_cpu_threads, pick_device, seed_everything

FORMAT_VERSION = modelstore.FORMAT_VERSION


# --------------------------------------------------------------------------- config


@dataclass
class TrainConfig:
    """What the loop itself reads; a trainer's config subclasses it and adds its own typed fields.

    epochs: epochs to run in all (a resumed run continues up to it). batch_size:
    examples per step (the trainer's `batches` reads it). steps_per_epoch: stop
    an epoch after this many steps (0: when `batches` is exhausted; needed for
    endless batch iterators). val_every: validate every N epochs (and after the
    last); val_every_steps: also every N steps (0: never). patience: stop after
    this many validations without improvement (0: never). max_minutes: stop
    after the epoch in which this much wall time of this session has passed
    (0: no limit; the run resumes later). grad_clip: clip each optimiser's
    gradients to this L2 norm (0: no clipping). amp: bfloat16 autocast on CUDA.
    threads: CPU threads (0: torch's default). seed: every random draw of the
    run derives from it (`anoncli train --seed`).
    """

    epochs: int = 10
    batch_size: int = 16
    steps_per_epoch: int = 0
    val_every: int = 1
    val_every_steps: int = 0
    patience: int = 0
    max_minutes: float = 0.0
    grad_clip: float = 0.0
    amp: bool = True
    threads: int = 1
    progress: bool = True
    register: bool = False
    seed: int = 0

    # Settings that say how long or where to run, not what is learnt: they may change on resume.
    run_settings: ClassVar[tuple[str, ...]] = (
        "epochs",
        "patience",
        "max_minutes",
        "threads",
        "progress",
        "register",
        "val_every",
        "val_every_steps",
    )

    def check(self) -> None:
        """Raise AnoncliError (naming the `--param`) for settings that cannot work together."""
        for name in ("epochs", "batch_size", "val_every"):
            if getattr(self, name) < 1:
                raise AnoncliError(f"--param {name}={getattr(self, name)}: expected at least 1")
        for name in ("steps_per_epoch", "val_every_steps", "patience", "max_minutes", "grad_clip"):
            if getattr(self, name) < 0:
                raise AnoncliError(f"--param {name}={getattr(self, name)}: expected 0 or more")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


def resolve_config(trainer_class: type[Trainer], options: TrainOptions) -> TrainConfig:
    """The run's config: a preset or a JSON file (`--config`; a file may name a `base` preset,
    default the trainer's `default_preset`), then `--param` pairs, then `--epochs`, `--batch-size`,
    `--max-minutes`, `--register`, `--no-progress`, `--seed`, and `--attribute` / `--utility` for a
    config with that label field.

    Every value goes through `anoncli.params` (typed by the config's fields). Raises
    AnoncliError (exit 2), one line naming the key or the file, for an unknown preset,
    key or an unconvertible value.
    """
    presets = trainer_class.presets
    name = trainer_class.train_name()
    choice = options.config or trainer_class.default_preset
    if choice in presets:
        config = presets[choice]
    else:
        path = Path(choice)
        if not path.is_file():
            raise AnoncliError(
                f"--config {choice!r}: neither a preset of {name} ({', '.join(presets)}) nor a JSON file"
                + trainer_class.preset_hint(choice)
            )
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise AnoncliError(f"{path}: cannot read JSON config ({err})") from None
        if not isinstance(data, dict):
            raise AnoncliError(f"{path}: a JSON config must be an object")
        base = data.pop("base", trainer_class.default_preset)
        if base not in presets:
            raise AnoncliError(
                f"{path}: unknown base preset {base!r} for {name} (choose from: {', '.join(presets)})"
                + trainer_class.preset_hint(base)
            )
        values = {k: v for k, v in data.items() if not k.startswith("_")}
        config = from_params(trainer_class.config_class, values, base=presets[base], strict=True, what=f"{path}:")
    config = from_params(trainer_class.config_class, options.extra, base=config, strict=True)
    overrides: dict[str, Any] = {"seed": options.seed}
    if options.epochs:
        overrides["epochs"] = options.epochs
    if options.batch_size:
        overrides["batch_size"] = options.batch_size
    if options.max_minutes is not None:
        overrides["max_minutes"] = options.max_minutes
    if options.register:  # a config file or --param register=yes may say so too
        overrides["register"] = True
    if not options.progress:  # --no-progress wins over a config's progress=yes
        overrides["progress"] = False
    fields = {field.name for field in dataclasses.fields(trainer_class.config_class)}
    for name, value in (("attribute", options.attribute), ("utility", options.utility)):
        if value and name in fields:  # --attribute / --utility name a label column of the config
            overrides[name] = value
    config = dataclasses.replace(config, **overrides)
    config.check()
    return config


def data_fingerprint(utterances: Iterable) -> str:
    """sha256 (16 hex digits) of the sorted (utterance id, file size in bytes) pairs: which data a model saw.

    A resumed run refuses other data; the checkpoint and card record it.
    """
    pairs = []
    for utt in utterances:
        path = Path(getattr(utt, "path", ""))
        size = path.stat().st_size if path.is_file() else -1
        pairs.append(f"{utt.utt_id}\t{size}")
    return hashlib.sha256("\n".join(sorted(pairs)).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- random states


def capture_rng(generator: torch.Generator | None = None) -> dict:
    """Every global random state (python, numpy, torch CPU and CUDA) and `generator`'s, as checkpoint-safe
    values (tensors, ints, lists: loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["data"] = generator.get_state()
    return state


def restore_rng(state: dict, generator: torch.Generator | None = None) -> None:
    """Undo `capture_rng`: set every global random state (and `generator`'s) saved in `state`."""
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state(
            ("MT19937", n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
        )
    # a checkpoint loaded onto a GPU (map_location) holds the states there; torch takes them on the CPU
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if generator is not None and "data" in state:
        generator.set_state(state["data"].cpu())


@contextlib.contextmanager
def isolated_rng(generator: torch.Generator | None = None):
    """Run a block (validation) without changing any random state training draws from."""
    saved = capture_rng(generator)
    try:
        yield
    finally:
        restore_rng(saved, generator)


# --------------------------------------------------------------------------- trainer


@dataclass
class FitResult:
    """What `fit` hands `Trainer.card` and `Trainer.finish`: the run folder, the last epoch and step done,
    the best epoch, its selection figure and validation figures, why the run stopped early (None,
    "patience" or "max_minutes") and this session's seconds."""

    run: RunFolder
    epoch: int
    step: int
    best_epoch: int
    best: float
    best_metrics: dict[str, float] = field(default_factory=dict)
    stopped: str | None = None
    seconds: float = 0.0


class Trainer:
    """Base class of every trainer: declare the model, the loop in `fit` does the rest (see the module doc)."""

    method: ClassVar[str] = ""  # model kind in the checkpoint (anonymize --method)
    name: ClassVar[str] = ""  # `train --method` name when it differs from `method`
    config_class: ClassVar[type[TrainConfig]] = TrainConfig
    presets: ClassVar[dict[str, TrainConfig]] = {}
    default_preset: ClassVar[str] = "quick"
    selection: ClassVar[tuple[str, str]] = ("val_score", "max")  # (figure of validate(), "max" or "min")

    def __init__(self, options: TrainOptions, config: TrainConfig | None = None):
        self.options = options
        self.config = config if config is not None else resolve_config(type(self), options)
        self.device = pick_device(options.device)
        self.rng = torch.Generator()  # seeded by fit; every data draw comes from it
        self.rng.manual_seed(self.config.seed)
        self.data_fingerprint: str | None = None
        self.run: RunFolder | None = None
        self.epoch = 0
        self.step = 0

    @classmethod
    def train(cls, options: TrainOptions) -> dict:
        """`anoncli train --method NAME`: build the trainer from `options` and run `fit`; returns the summary."""
        return fit(cls(options))

    @classmethod
    def train_name(cls) -> str:
        """The name `anoncli train --method` knows this trainer by."""
        return cls.name or cls.method

    @classmethod
    def preset_hint(cls, choice: str) -> str:
        """Text appended to the error for an unknown preset `choice` (e.g. which trainer has it); "" by default."""
        return ""

    # ---- declared by each trainer
    def setup(self) -> None:
        """Read the data, build the networks and optimisers (on `self.device`); set `self.data_fingerprint`."""
        raise NotImplementedError

    def modules(self) -> dict[str, nn.Module]:
        """Every trained network by name (checkpointed under `models`)."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimisers by name (checkpointed; `optimize(name, loss)` steps one)."""
        return {}

    def batches(self, epoch: int) -> Iterable:
        """The batches of epoch `epoch` (1-based), drawn from `self.rng`; may be endless with `steps_per_epoch`."""
        raise NotImplementedError

    def train_step(self, batch: Any) -> dict[str, float]:
        """One training step on `batch` (calls `optimize` per optimiser); returns the losses as floats."""
        raise NotImplementedError

    def validate(self) -> dict[str, float]:
        """Validation figures, including the `selection` metric; {} for none."""
        return {}

    # ---- optional hooks
    def start(self) -> None:
        """A fresh run only, after `setup`, before epoch 1 (discriminator warm-up, a frozen attacker)."""

    def extra_state(self) -> dict:
        """More to checkpoint (tensors and plain values): frozen attackers, the trainer's own generators."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        """Restore what `extra_state` saved (on resume)."""

    def model_info(self) -> dict:
        """The checkpoint keys inference reads besides `models`: `config` (the settings that describe the
        networks), `classes`, `attribute`, ..."""
        return {"config": {}}

    def total_epochs(self) -> int:
        """Epochs `fit` runs in all: `epochs`. A trainer in stages (RDAL-M's mask, then its features)
        adds the epochs of its earlier stages and tells them apart by the epoch number."""
        return self.config.epochs

    def inference_modules(self) -> list[str]:
        """The modules an anonymizer loads (exported to the shipped form); all by default."""
        return list(self.modules())

    def card(self, result: FitResult) -> dict:
        """Entries of the model card (RUN/model.json) besides the loop's own (data, labels, ...)."""
        return {}

    def finish(self, result: FitResult) -> dict:
        """After the card is written: exports and extra summary entries."""
        return {}

    # ---- services of the loop
    def optimize(self, name: str | tuple[str, ...], loss: torch.Tensor) -> None:
        """One step of optimiser `name` on `loss`: zero_grad, backward, clip to `grad_clip` (L2 norm), step.

        A tuple of names steps each of them, in order, after one backward of `loss` (an adversary behind
        a gradient-reversal layer and the network it reverses into learn from the same pass); each
        optimiser's gradients are clipped on their own.
        """
        optimizers = [self.optimizers()[key] for key in ((name,) if isinstance(name, str) else name)]
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in optimizers:
            if self.config.grad_clip:
                params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
                torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
            optimizer.step()

    def autocast(self):
        """bfloat16 autocast on CUDA when `amp` (no grad scaler needed); a no-op on the CPU."""
        if self.config.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


# --------------------------------------------------------------------------- checkpoints


def checkpoint_state(trainer: Trainer, loop: dict) -> dict:
    """The one checkpoint format (`modelstore.FORMAT_VERSION`), a dict loadable with weights_only=True:

    * `format_version`, `method` (model kind), `trainer` (`train --method` name), `epoch`, `step`, `seed`;
    * `models` {module: state dict} (every trained network) and `inference_modules` (those an
      anonymizer loads), `optimizers` {name: state dict};
    * `trainer_config` (the config dataclass as a dict) and `data_fingerprint`;
    * the trainer's `model_info()`: `config` (the network-describing settings), `classes`,
      `attribute`, `synthesis`, ... (what inference reads);
    * `loop` (best figure and epoch, validations without improvement, last figures),
      `rng` (every random state) and `extra` (`extra_state()`).
    """
    state = {
        "format_version": FORMAT_VERSION,
        "method": trainer.method,
        "trainer": trainer.train_name(),
        "epoch": trainer.epoch,
        "step": trainer.step,
        "seed": trainer.config.seed,
        "models": {name: module.state_dict() for name, module in trainer.modules().items()},
        "inference_modules": list(trainer.inference_modules()),
        "optimizers": {name: opt.state_dict() for name, opt in trainer.optimizers().items()},
        "trainer_config": trainer.config.to_dict(),
        "data_fingerprint": trainer.data_fingerprint,
        "loop": dict(loop),
        "rng": capture_rng(trainer.rng),
        "extra": trainer.extra_state(),
    }
    info = trainer.model_info()
    clash = set(info) & set(state)
    if clash:
        raise ValueError(f"model_info() may not set the loop's checkpoint keys {sorted(clash)}")
    state.update(info)
    state.setdefault("config", {})
    return state


def _load_checkpoint(trainer: Trainer, state: dict, run: RunFolder) -> dict:
    """Restore networks, optimisers, random states and counters from `state`; return its `loop` dict."""
    if state.get("format_version") != FORMAT_VERSION or "loop" not in state:
        raise AnoncliError(
            f"{run.last_path}: a checkpoint of an older anoncli (format "
            f"{state.get('format_version', state.get('format', 1))}) cannot be resumed; "
            "start over with --overwrite or another --out (its model still loads for anonymize)"
        )
    if trainer.data_fingerprint and state.get("data_fingerprint") not in (None, trainer.data_fingerprint):
        raise AnoncliError(
            f"{run.root}: was trained on other data (fingerprint {state['data_fingerprint']}, "
            f"now {trainer.data_fingerprint}); use another --out or --overwrite to start over"
        )
    for name, module in trainer.modules().items():
        module.load_state_dict(state["models"][name])
    for name, optimizer in trainer.optimizers().items():
        optimizer.load_state_dict(state["optimizers"][name])
    trainer.load_extra_state(state.get("extra") or {})
    restore_rng(state["rng"], trainer.rng)
    trainer.epoch, trainer.step = int(state["epoch"]), int(state["step"])
    return dict(state["loop"])


# --------------------------------------------------------------------------- the loop


def _better(value: float, best: float, mode: str) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return value > best if mode == "max" else value < best


def fit(trainer: Trainer) -> dict:
    """Train (or resume) `trainer` in its run folder (`options.out`); returns the run summary.

    Per epoch: `batches(epoch)` -> `train_step` (at most `steps_per_epoch`), validation every
    `val_every` epochs (and `val_every_steps` steps, and after the last epoch or an early stop),
    `last.pt` (and `best.pt` when the `selection` figure improved) written atomically, one row
    in `log.parquet` and `log.jsonl` (which also holds every step's losses), one progress line.
    Stops early after `patience` validations without improvement or past `max_minutes`.
    Then writes the model card, calls `finish` and registers the best model with `register`.

    Raises AnoncliError (exit 2) for a run folder holding another config, other data or an
    older checkpoint format, and whatever `setup` raises for unusable data.
    """
    config, options = trainer.config, trainer.options
    name = trainer.train_name()
    metric, mode = trainer.selection
    limit_cpu_threads(config.threads or None)
    run_config = {"method": name, **config.to_dict()}
    run = RunFolder(
        options.out,
        run_config,
        overwrite=options.overwrite,
        create=False,
        resume_keys=[k for k in run_config if k not in config.run_settings],
    )
    trainer.run = run
    started = time.time()
    seed_everything(config.seed)
    trainer.rng.manual_seed(config.seed)
    trainer.setup()
    for module in trainer.modules().values():
        module.to(trainer.device)
    run.create()
    loop = {
        "metric": metric,
        "mode": mode,
        "best": -math.inf if mode == "max" else math.inf,
        "best_epoch": -1,
        "best_metrics": {},
        "bad_validations": 0,
        "stopped": None,
    }
    state = run.resume("cpu")  # load_state_dict copies onto the modules' device
    if state is not None:
        loop = _load_checkpoint(trainer, state, run)
        run.truncate_log(trainer.epoch)
        progress_line(f"resuming {run.root} after epoch {trainer.epoch}")
    else:
        run.truncate_log(0)
        trainer.start()
    last_epoch = trainer.total_epochs()
    if (
        loop.get("stopped") == "patience"
        and trainer.epoch < last_epoch
        and (not config.patience or loop["bad_validations"] < config.patience)
    ):
        loop["stopped"] = None  # a larger --param patience lets a stopped run go on

    def validate_now() -> dict[str, float]:
        for module in trainer.modules().values():
            module.eval()
        with isolated_rng(trainer.rng), torch.no_grad():
            figures = {k: float(v) for k, v in trainer.validate().items()}
        for module in trainer.modules().values():
            module.train()
        return figures

    def judge(figures: dict[str, float]) -> bool:
        """Whether `figures` are the best so far (a trainer without validation: every epoch is)."""
        if metric not in figures:
            loop["best_epoch"] = trainer.epoch
            return True
        if _better(figures[metric], loop["best"], mode) or loop["best_epoch"] < 0:
            loop.update(best=figures[metric], best_epoch=trainer.epoch, best_metrics=figures, bad_validations=0)
            return True
        loop["bad_validations"] += 1
        return False

    for module in trainer.modules().values():
        module.train()
    stopped = loop.get("stopped")
    for epoch in range(trainer.epoch + 1, last_epoch + 1):
        if stopped:
            break
        trainer.epoch = epoch
        sums: dict[str, float] = {}
        count = 0
        batches = trainer.batches(epoch)
        total = len(batches) if hasattr(batches, "__len__") else None
        if config.steps_per_epoch:
            total = min(total, config.steps_per_epoch) if total is not None else config.steps_per_epoch
        step_figures: dict[str, float] | None = None
        step_figures_at = -1
        bar = progress_bar(
            total=total,
            desc=f"{name} epoch {epoch}/{last_epoch}",
            unit="step",
            enabled=config.progress,
            log_step_percent=100,
            leave=False,
        )
        for batch in batches:
            with trainer.autocast():
                losses = {k: float(v) for k, v in trainer.train_step(batch).items()}
            trainer.step += 1
            count += 1
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value
            run.log_step({"epoch": epoch, "step": trainer.step, **losses})
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()})
            if config.val_every_steps and trainer.step % config.val_every_steps == 0:
                figures = step_figures = validate_now()
                step_figures_at = trainer.step
                run.log_step({"epoch": epoch, "step": trainer.step, **figures})
                if judge(figures):
                    run.save(checkpoint_state(trainer, loop), best=True, last=False)
            if config.steps_per_epoch and count >= config.steps_per_epoch:
                break
        bar.close()
        means = {k: v / max(1, count) for k, v in sums.items()}
        out_of_time = bool(config.max_minutes) and time.time() - started >= 60.0 * config.max_minutes
        row: dict[str, Any] = {"epoch": epoch, "step": trainer.step, "steps": count, **means}
        best = False
        if epoch % config.val_every == 0 or epoch == last_epoch or out_of_time:
            if step_figures is not None and step_figures_at == trainer.step:
                row.update(step_figures)  # validated (and judged) at this very step already
            else:
                figures = validate_now()
                row.update(figures)
                best = judge(figures)
            if config.patience and loop["bad_validations"] >= config.patience:
                loop["stopped"] = stopped = "patience"
        if out_of_time and not loop.get("stopped") and epoch < last_epoch:  # after the last epoch: finished
            stopped = "max_minutes"  # not checkpointed: the next session goes on
        loop["metrics"] = {k: v for k, v in row.items() if k.startswith("val")}
        row["elapsed_s"] = round(time.time() - started, 3)
        run.log(row)  # before the checkpoint: a kill in between leaves a row the resume drops,
        run.save(checkpoint_state(trainer, loop), best=best)  # never a checkpoint without its row
        shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float) and k not in ("elapsed_s",))
        if config.progress:  # --no-progress / -q: resume and stop notes only
            progress_line(f"{name} epoch {epoch}/{last_epoch}: {shown}")
    if stopped == "patience":
        progress_line(
            f"{name}: stopped after epoch {trainer.epoch}: no better {metric} in {config.patience} validations"
        )
    elif stopped == "max_minutes":
        progress_line(
            f"{name}: stopping after epoch {trainer.epoch}: max_minutes={config.max_minutes:g} reached "
            "(run the same command again to continue)"
        )

    result = FitResult(
        run=run,
        epoch=trainer.epoch,
        step=trainer.step,
        best_epoch=int(loop["best_epoch"]),
        best=float(loop["best"]),
        best_metrics=dict(loop.get("best_metrics") or {}),
        stopped=stopped,
        seconds=time.time() - started,
    )
    card = {
        "method": trainer.method,
        "trainer": name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config.to_dict(),
        "seed": config.seed,
        "device": str(trainer.device),
        "data_fingerprint": trainer.data_fingerprint,
        "best_epoch": result.best_epoch,
        "selection": {"metric": metric, "mode": mode, "value": result.best},
        "validation": dict(result.best_metrics),
        "epochs_done": result.epoch,
        "steps": result.step,
        "train_seconds_this_session": round(result.seconds, 1),
    }
    card.update(trainer.card(result))
    run.write_card(card)
    summary: dict[str, Any] = {
        "run": str(run.root),
        "method": trainer.method,  # the model's kind: what `anonymize --method` loads it as
        "best_epoch": result.best_epoch,
        "best_score": result.best,
        "epochs": result.epoch,
        "steps": result.step,
        "validation": card["validation"],
    }
    if result.stopped:
        summary["stopped"] = result.stopped
    summary.update(trainer.finish(result))
    registered = None
    if config.register and run.best_path.exists():
        registered = str(modelstore.register(trainer.method, run.root))
    summary["registered"] = registered
    return summary
