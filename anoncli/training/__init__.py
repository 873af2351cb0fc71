"""Registry of trainers for `anoncli train --method NAME`: one module each, imported when used.

A trainer is a `anoncli.training.loop.Trainer` subclass (its module docstring
says how to write one): the one loop `fit` runs it, writing the run folder
(checkpoints, log.jsonl, log.parquet, model.json), and returns a summary. A
registry entry may also name a function `train(options: TrainOptions) -> dict`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from anoncli.errors import AnoncliError

# name -> "module:Trainer class" (or "module:function"); a new trainer needs one module and one line here.
TRAINERS: dict[str, str] = {
    "pcmelgan": "anoncli.training.pcmelgan:PCMelGANTrainer",
    "gengan": "anoncli.training.gengan:GenGANTrainer",
    "psegan": "anoncli.training.psegan:PSEGANTrainer",
    # the source-filter variants write pcmelgan / gengan / psegan models (presets sf-quick, sf-full)
    "pcmelgan-sf": "anoncli.training.pcmelgan:PCMelGANSourceFilterTrainer",
    "gengan-sf": "anoncli.training.gengan:GenGANSourceFilterTrainer",
    "psegan-sf": "anoncli.training.psegan:PSEGANSourceFilterTrainer",
    "melgan": "anoncli.training.melgan:MelGANVocoderTrainer",
    "siamese": "anoncli.training.siamese:SiameseTrainer",
    "rdalm": "anoncli.training.rdalm:RdalmTrainer",
    "attribute": "anoncli.evaluation.attribute:train_attribute",
    "asv": "anoncli.training.asv:AsvTrainer",
    "score-attackers": "anoncli.training.score_attackers:ScoreAttackersTrainer",
    "world_norm": "anoncli.training.world_norm:WorldNormTrainer",
    "world_phone": "anoncli.training.world_phone:WorldPhoneTrainer",
    # bounded residual generators on normalised WORLD features (write gengan / pcmelgan / psegan models)
    "gengan-world": "anoncli.training.world_gan:WorldGanTrainer",
    "pcmelgan-world": "anoncli.training.world_gan:PCMelGanWorldTrainer",
    "psegan-world": "anoncli.training.world_gan:PSEGANWorldTrainer",
}


@dataclass
class TrainOptions:
    """What `anoncli train` passes every trainer: corpus, run folder, labels, label/attribute/utility columns, epochs, batch, device, seed, preset and `--param` pairs."""

    corpus: Path
    out: Path
    labels_file: Path | None = None
    labels_sep: str | None = None  # CSV separator of labels_file (sniffed when None)
    layout: str = "auto"
    label: str | None = None  # attribute probes: the label column to learn
    attribute: str | None = None  # learned methods: the private attribute column
    utility: str | None = None  # representation methods: the utility label column
    epochs: int | None = None
    batch_size: int | None = None
    device: str = "auto"
    seed: int = 0
    overwrite: bool = False
    config: str | None = None  # "quick" / "full" or a path to a JSON config
    extra: dict[str, str] = field(default_factory=dict)
    register: bool = False  # --register: make the run's model what `--method M` uses by default
    max_minutes: float | None = None  # --max-minutes: stop after the epoch that passes this wall time (resumable)
    progress: bool = True  # --no-progress / -q: no bars and no per-epoch lines on stderr

    def open_corpus(self):
        """The training corpus with its labels (`labels_file`, `labels_sep`) and `layout`.

        Raises InputError (exit 2) when the corpus or its labels cannot be read.
        """
        from anoncli.corpus import open_corpus

        return open_corpus(self.corpus, self.labels_file, self.layout, labels_sep=self.labels_sep)


def trainer_names() -> list[str]:
    """Registered training method names, sorted."""
    return sorted(TRAINERS)


def get_trainer(name: str) -> Callable[[TrainOptions], dict]:
    """The training function registered as `name` (its module imported now): a Trainer class's `train`,
    or the function registered; raises AnoncliError (exit 2) for an unknown name."""
    if name not in TRAINERS:
        known = ", ".join(trainer_names()) or "none yet"
        raise AnoncliError(f"unknown training method {name!r} (choose from: {known})")
    module_name, attr = TRAINERS[name].split(":")
    target = getattr(importlib.import_module(module_name), attr)
    return target.train if isinstance(target, type) else target
