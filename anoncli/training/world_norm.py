"""`anoncli train --method world_norm`: fit the pseudo-speaker distribution of `--method world_norm`.

Nothing is learnt by gradient: the model is a Gaussian per gender over
speakers' statistics vectors (`anoncli.synthesis.world_norm`). Every
utterance of CORPUS with a speaker and a gender label (`--attribute`, or
`--param attribute=`, default `gender`) is analysed into compact WORLD
features at `sample_rate` (`anoncli.synthesis.world_features`, no
aperiodicity); each speaker's statistics are pooled over their utterances
(`pool_stats`), and `fit_pseudo_speakers` fits each gender's mean and
Ledoit-Wolf covariance and its mean envelope correlation. Speaker-disjoint:
the speakers of `exclude_speakers` (a comma list) and of `exclude_corpus` (a
folder whose labelled speakers are held out, e.g. the corpus the model is
measured on) are left out of the fit. Deterministic: speakers and files in
sorted order, no random draw.

The run goes through the training loop (`anoncli.training.loop.fit`) as one
epoch of one step (like `score-attackers`), so RUN is a run folder like any
trainer's: `checkpoints/best.pt` holds the distribution as the module
`sampler` (buffers `means`, `chols`, `speakers`, `corrs`) and the model's
config (`covariance`, `clip_sigma`, ...), which `anoncli anonymize --method
world_norm --checkpoint RUN` loads and `--register` puts in the local store.
RUN also gets the shipped form, `model.safetensors` and `card.json` (data,
training and held-out speakers, the command), which `--checkpoint RUN` would
equally load and which is copied into `anoncli/pretrained/world_norm/` to
ship a model (recipes/world_norm/README.md). The audio analysis runs in the
step, so rerunning a finished run reads no audio and changes no weights.

Settings (`--param`): `attribute`, `exclude_speakers`, `exclude_corpus`,
`full_covariance` (yes: impose the envelope's mean and covariance; no: its
per-dimension mean and std), `clip_sigma` (a pseudo-speaker's standard
normal draw is clipped there), `sample_rate`.

Raises AnoncliError (exit 2), one line, when the gender column is missing,
the training speakers cover a single gender (`check_split_classes`), a
gender has fewer than 2 speakers, or a speaker carries two genders.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from anoncli.errors import AnoncliError
from anoncli.progress import write as progress_line
from anoncli.training import TrainOptions
from anoncli.training.common import check_split_classes
from anoncli.training.loop import FitResult, TrainConfig, Trainer, data_fingerprint

DEFAULT_ATTRIBUTE = "gender"


@dataclass
class WorldNormConfig(TrainConfig):
    """The fit's settings: the gender column (`attribute`, None: `--attribute` or "gender"), the held-out
    speakers (`exclude_speakers`, and every labelled speaker of the folder `exclude_corpus`), whether the
    model imposes the envelope's full covariance (`full_covariance`) or its diagonal, where a draw is
    clipped (`clip_sigma`, standard deviations) and the analysis rate (`sample_rate`, Hz). One fit: `epochs` is 1."""

    attribute: str | None = None
    exclude_speakers: list[str] = field(default_factory=list)
    exclude_corpus: str = ""
    full_covariance: bool = True
    clip_sigma: float = 2.0
    sample_rate: int = 16000

    def check(self) -> None:
        """Raise AnoncliError for epochs other than 1, a clip_sigma not above 0 or a sample_rate below 8 kHz."""
        super().check()
        if self.epochs != 1:
            raise AnoncliError(f"--epochs {self.epochs}: world_norm fits its distribution once (epochs 1)")
        if not self.clip_sigma > 0:
            raise AnoncliError(f"--param clip_sigma={self.clip_sigma}: expected a positive number")
        if self.sample_rate < 8000:
            raise AnoncliError(f"--param sample_rate={self.sample_rate}: expected at least 8000 Hz")


PRESETS = {"default": WorldNormConfig(epochs=1, batch_size=1, amp=False, threads=1)}


class Sampler(nn.Module):
    """The fitted distribution as buffers (the checkpoint's `models["sampler"]`, what the world_norm pipeline
    reads): means (G, 82), chols (G, 82, 82), corrs (G, 40, 40) float64 and speakers (G,) int64; zeros until fitted."""

    def __init__(self, classes: int):
        super().__init__()
        from anoncli.synthesis.world_features import N_MCEP
        from anoncli.synthesis.world_norm import STAT_DIM

        self.register_buffer("means", torch.zeros(classes, STAT_DIM, dtype=torch.float64))
        self.register_buffer("chols", torch.zeros(classes, STAT_DIM, STAT_DIM, dtype=torch.float64))
        self.register_buffer("speakers", torch.zeros(classes, dtype=torch.int64))
        self.register_buffer("corrs", torch.zeros(classes, N_MCEP, N_MCEP, dtype=torch.float64))

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Copy `PseudoSpeakers.arrays()` into the buffers."""
        for name, value in arrays.items():
            getattr(self, name).copy_(torch.from_numpy(np.asarray(value)))

    def arrays(self) -> dict[str, np.ndarray]:
        """The buffers as numpy arrays (the `PseudoSpeakers.arrays()` form)."""
        return {name: buffer.detach().cpu().numpy() for name, buffer in self.named_buffers()}


def excluded_speakers(config: WorldNormConfig, options: TrainOptions) -> list[str]:
    """The held-out speakers: `exclude_speakers` and every labelled speaker of `exclude_corpus`, sorted.
    Raises InputError when `exclude_corpus` cannot be read, AnoncliError when it names no speaker."""
    held = {str(s) for s in config.exclude_speakers if str(s)}
    if config.exclude_corpus:
        from anoncli.corpus import open_corpus

        corpus = open_corpus(Path(config.exclude_corpus), None, options.layout)
        named = {str(u.speaker) for u in corpus.utterances if u.speaker}
        if not named:
            raise AnoncliError(f"--param exclude_corpus={config.exclude_corpus}: its files carry no speaker label")
        held |= named
    return sorted(held)


class WorldNormTrainer(Trainer):
    """`anoncli train --method world_norm`: the pseudo-speaker distribution fitted on CORPUS's training speakers
    (see the module text), one loop step, written to `options.out` as a checkpoint and in the shipped form."""

    method = "world_norm"
    config_class = WorldNormConfig
    presets = PRESETS
    default_preset = "default"
    selection = ("val_speakers", "max")  # nothing to choose between: the one epoch is the model

    def __init__(self, options: TrainOptions, config: WorldNormConfig | None = None):
        super().__init__(options, config)
        # the resolved column is part of the run's config (a resumed run must use the same one)
        attribute = self.config.attribute or DEFAULT_ATTRIBUTE
        self.config = dataclasses.replace(self.config, attribute=attribute)
        self.attribute = attribute

    def setup(self) -> None:
        """Open the corpus, leave out the held-out speakers, check both genders are there (no audio read yet)."""
        options, attribute = self.options, self.attribute
        corpus = options.open_corpus()
        if corpus.label_columns and attribute not in corpus.label_columns:
            raise AnoncliError(
                f"{options.corpus}: no {attribute!r} label column (columns: {', '.join(corpus.label_columns)}); "
                "choose one with --attribute"
            )
        self.excluded = excluded_speakers(self.config, options)
        held = set(self.excluded)
        labelled = [u for u in corpus.utterances if u.speaker and u.labels.get(attribute)]
        if not labelled:
            raise AnoncliError(
                f"{options.corpus}: no utterance has both a speaker and a {attribute!r} label "
                "(a metadata.csv or --labels is needed)"
            )
        train = [u for u in labelled if str(u.speaker) not in held]
        try:
            check_split_classes(train, [], lambda u: u.labels[attribute], attribute, need_val=False)
        except AnoncliError as err:
            left_out = len({str(u.speaker) for u in labelled}) - len({str(u.speaker) for u in train})
            note = f"; {left_out} held-out speakers were left out first" if left_out else ""
            raise AnoncliError(
                f"{options.corpus}: {err} (world_norm fits each {attribute} on 2 or more speakers{note})"
            ) from None
        genders: dict[str, str] = {}
        for utt in sorted(train, key=lambda u: u.utt_id):
            speaker, gender = str(utt.speaker), str(utt.labels[attribute])
            if genders.setdefault(speaker, gender) != gender:
                raise AnoncliError(
                    f"{utt.path}: speaker {speaker} is labelled both {genders[speaker]} and {gender} "
                    f"({attribute!r} must be one value per speaker)"
                )
        self.classes = sorted(set(genders.values()))
        few = {g: n for g in self.classes if (n := sum(v == g for v in genders.values())) < 2}
        if few:
            shown = ", ".join(f"{n} {g}" for g, n in few.items())
            raise AnoncliError(f"{options.corpus}: {shown} training speaker(s): each {attribute} needs at least 2")
        self.genders = genders
        self.train_utts = sorted(train, key=lambda u: u.utt_id)
        self.corpus_root = Path(options.corpus)
        self.data_fingerprint = data_fingerprint(self.train_utts)
        self.sampler = Sampler(len(self.classes))
        self.without_f0: list[str] = []  # speakers left out of the fit for want of a voiced frame
        if self.config.progress:
            counts = ", ".join(f"{sum(v == g for v in genders.values())} {g}" for g in self.classes)
            progress_line(
                f"world_norm: fitting on {len(genders)} speakers ({counts}; {len(self.train_utts)} utterances), "
                f"{len(self.excluded)} held-out speakers excluded"
            )

    def modules(self) -> dict[str, nn.Module]:
        return {"sampler": self.sampler}

    def batches(self, epoch: int):
        return [self.train_utts]

    def train_step(self, utterances: list) -> dict[str, float]:
        """Analyse every training utterance, pool each speaker's statistics, fit the distribution."""
        from anoncli.synthesis import world_features
        from anoncli.synthesis.world_norm import fit_pseudo_speakers, pool_stats
        from anoncli.training.common import resampled_waves

        rate = self.config.sample_rate
        features = defaultdict(list)
        for utt, wave in resampled_waves(utterances, rate, "WORLD analysis", self.config.progress):
            if len(wave) < world_features.min_samples(rate):
                progress_line(f"world_norm: {utt.path} left out (shorter than a WORLD frame)")
                continue
            features[str(utt.speaker)].append(world_features.analyse(wave.numpy(), rate, aperiodicity=False))
        stats = {speaker: pool_stats(items) for speaker, items in sorted(features.items())}
        self.without_f0 = sorted(s for s, st in stats.items() if st.f0_mean is None)
        try:
            fitted = fit_pseudo_speakers(stats, self.genders, tuple(self.classes), self.config.clip_sigma)
        except ValueError as err:
            raise AnoncliError(f"{self.options.corpus}: {err}") from None
        self.sampler.load_arrays(fitted.arrays())
        return {"speakers": float(sum(fitted.speakers))}

    def validate(self) -> dict[str, float]:
        """How many speakers the distribution was fitted on (0 before the fit): no held-out figure, the
        held-out measurement is `anoncli evaluate` on the excluded speakers' anonymized audio."""
        return {"val_speakers": float(self.sampler.speakers.sum())}

    def extra_state(self) -> dict:
        return {"without_f0": list(self.without_f0)}

    def load_extra_state(self, state: dict) -> None:
        self.without_f0 = list(state.get("without_f0") or [])

    def model_info(self) -> dict:
        from anoncli.methods.world_norm import model_config

        covariance = "full" if self.config.full_covariance else "diagonal"
        return {
            "config": model_config(self.config.sample_rate, covariance, self.config.clip_sigma),
            "classes": list(self.classes),
            "attribute": self.attribute,
        }

    def pseudo_speakers(self):
        """The fitted distribution (`PseudoSpeakers`) held by the sampler's buffers."""
        from anoncli.synthesis.world_norm import PseudoSpeakers

        return PseudoSpeakers.from_arrays(self.sampler.arrays(), self.classes, self.config.clip_sigma)

    def command(self) -> str:
        """The `anoncli train` command that fits this model (the settings that differ from the preset)."""
        parts = ["anoncli", "train", "--method", self.method, str(self.options.corpus), "--out", str(self.options.out)]
        if self.options.labels_file:
            parts += ["--labels", str(self.options.labels_file)]
        if self.options.seed:
            parts += ["--seed", str(self.options.seed)]
        base, values = PRESETS[self.default_preset].to_dict(), self.config.to_dict()
        for key in ("attribute", "exclude_speakers", "exclude_corpus", "full_covariance", "clip_sigma", "sample_rate"):
            value = values[key]
            if key == "attribute" and value == DEFAULT_ATTRIBUTE or value == base[key]:
                continue
            shown = (
                ",".join(value)
                if isinstance(value, list)
                else ("yes" if value is True else "no" if value is False else value)
            )
            parts += ["--param", f"{key}={shown}"]
        return shlex.join(parts)

    def data_card(self) -> dict:
        """The card's `data` entry: corpus, training speakers by gender, held-out speakers, utterance count."""
        used = sorted(set(self.genders) - set(self.without_f0))
        return {
            "corpus": str(self.corpus_root),
            "attribute": self.attribute,
            "train_speakers": used,
            "train_speakers_by_class": {g: sum(self.genders[s] == g for s in used) for g in self.classes},
            "train_utterances": len(self.train_utts),
            "excluded_speakers": list(self.excluded),
            "speakers_without_f0": list(self.without_f0),
        }

    def card(self, result: FitResult) -> dict:
        return {
            "data": self.data_card(),
            "labels": {"attribute": self.attribute, "classes": list(self.classes)},
            "command": self.command(),
            "files": {"shipped_form": "model.safetensors and card.json (anoncli/pretrained/world_norm form)"},
        }

    def shipped_card(self) -> dict:
        """The card of the run's shipped form: data, config, command, seed, data fingerprint, anoncli version."""
        from anoncli import __version__

        return {
            "data": self.data_card(),
            "config": self.config.to_dict(),
            "command": self.command(),
            "seed": self.config.seed,
            "data_fingerprint": self.data_fingerprint,
            "anoncli_version": __version__,
        }

    def finish(self, result: FitResult) -> dict:
        """Write the shipped form (`model.safetensors`, `card.json`) of the fitted distribution into the run."""
        from anoncli.methods.world_norm import save_model

        card = self.shipped_card()
        info = self.model_info()
        weights = save_model(
            self.pseudo_speakers(),
            result.run.root,
            card,
            sample_rate=info["config"]["sample_rate"],
            covariance=info["config"]["covariance"],
            attribute=self.attribute,
        )
        return {"model": str(weights), "speakers": {g: int(n) for g, n in zip(self.classes, self.sampler.speakers)}}
