"""What the PCMelGAN, GenGAN and PSEGAN trainers share, in both of their domains.

* `GANConfig` / `GANTrainer`: the settings and steps of every attribute GAN:
  the private attribute (`--attribute`, else the trainer's default), the
  labelled utterances of the chosen speakers, the class names, the
  speaker-disjoint train/validation split (stratified by the attribute when it
  is a speaker-level label), the training data's fingerprint, the model card's
  data and labels, and the checkpoint keys inference reads (`config`: the
  network-describing settings, `classes`, `attribute`). The loop
  (`anoncli.training.loop.fit`) does the rest.
* `MelGANConfig` / `MelGANTrainer`: the mel-domain trainers (`--method
  pcmelgan|gengan|psegan`): log-mels computed once per run (cached in
  RUN/cache or `cache_dir`) and normalised per utterance; shuffled batches of
  random fixed-length crops; a frozen *validation attacker* (a small AlexNet
  classifier trained once on the training speakers' original mels, an
  "ignorant" attacker the generator never sees) whose accuracy on the
  generator's output for the held-out speakers gives the selection score:
  normalised privacy minus a distortion penalty.
* The source-filter trainers (`--method pcmelgan-sf|gengan-sf|psegan-sf`)
  extend `GANTrainer` in `source_filter_gan`.

Each method module subclasses these with its networks and one step.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from anoncli.errors import AnoncliError
from anoncli.models.discriminator import AlexNetDiscriminator
from anoncli.models.generators import N_MELS
from anoncli.scoring.metrics import normalised_accuracy
from anoncli.synthesis.mel import LogMel, normalize
from anoncli.training import TrainOptions
from anoncli.training.common import check_split_classes, speaker_split
from anoncli.training.loop import TrainConfig, Trainer, data_fingerprint

# --------------------------------------------------------------------------- the shared GAN trainer


@dataclass
class GANConfig(TrainConfig):
    """Settings of every attribute GAN: networks (sample_rate, U-Net channels, residual shortcut),
    crops (segment_frames), learning rates, discriminator size (d_width, d_first_stride) and warm-up
    steps, and the data: the attribute column (None: the trainer's default), the speakers to keep or
    exclude, the validation speakers (else val_fraction of them drawn with the seed), cache_dir."""

    sample_rate: int = 16000
    channels: list[int] = field(default_factory=lambda: [8, 16, 32, 64, 128])
    residual: bool = True
    segment_frames: int = 64
    lr_g: float = 1e-3
    lr_d: float = 3e-4
    d_width: float = 0.25
    d_first_stride: int = 2
    d_warmup_steps: int = 200
    val_fraction: float = 0.2
    val_speakers: list[str] = field(default_factory=list)
    speakers: list[str] = field(default_factory=list)
    exclude_speakers: list[str] = field(default_factory=list)
    attribute: str | None = None
    cache_dir: str = ""

    run_settings: ClassVar[tuple[str, ...]] = TrainConfig.run_settings + ("cache_dir",)

    def check(self) -> None:
        """TrainConfig's checks, and U-Net channels whose levels divide the 80 mel bands and the crops:
        1 to 5 positive widths (stride 2**(levels - 1)), segment_frames a multiple of the stride."""
        super().check()
        shown = ",".join(str(w) for w in self.channels)
        levels = len(self.channels)
        most = max(n for n in range(1, 8) if N_MELS % 2 ** (n - 1) == 0)
        if not 1 <= levels <= most or any(w < 1 for w in self.channels):
            raise AnoncliError(
                f"--param channels={shown}: expected 1 to {most} positive encoder widths, one per "
                f"U-Net level (the {N_MELS} mel bands must divide by 2**(levels - 1)), e.g. channels=8,16,32"
            )
        stride = 2 ** (levels - 1)
        if self.segment_frames < stride or self.segment_frames % stride:
            raise AnoncliError(
                f"--param segment_frames={self.segment_frames}: expected a multiple of {stride} "
                f"(the stride of a {levels}-level U-Net)"
            )


class GANTrainer(Trainer):
    """An attribute GAN: the data split, classes, fingerprint, card and inference keys; subclasses add the domain."""

    default_attribute: ClassVar[str] = "gender"
    # the config fields that describe the networks (the checkpoint's `config`, what inference builds from)
    model_keys: ClassVar[tuple[str, ...]] = ("sample_rate", "channels", "residual")
    # `train --method` name of this method's trainer in the other domain, for the unknown-preset message
    other_domain: ClassVar[str] = ""

    def __init__(self, options: TrainOptions, config: GANConfig | None = None):
        super().__init__(options, config)
        # the resolved attribute is part of the run's config (a resumed run must hide the same one)
        attribute = self.config.attribute or self.default_attribute
        self.config = dataclasses.replace(self.config, attribute=attribute)
        self.attribute = attribute

    @classmethod
    def preset_hint(cls, choice: str) -> str:
        other = cls.other_domain
        return f"; for the other domain's presets use --method {other}" if other else ""

    def split(self) -> None:
        """Open the corpus, keep the chosen speakers' utterances labelled with the attribute, and split them
        speaker-disjointly: sets `classes`, `train_utts`, `val_utts`, `val_speakers` and `data_fingerprint`.

        Raises AnoncliError when the attribute column is missing, unlabelled or has a single value, or when
        the training or the validation speakers cover a single class (`check_split_classes`).
        """
        c, options = self.config, self.options
        corpus = options.open_corpus()
        attribute = self.attribute
        if corpus.label_columns and attribute not in corpus.label_columns:
            raise AnoncliError(
                f"{options.corpus}: no {attribute!r} label column (columns: {', '.join(corpus.label_columns)}); "
                "choose one with --attribute"
            )
        utterances = corpus.utterances
        if c.speakers:
            utterances = [u for u in utterances if str(u.speaker) in set(c.speakers)]
        if c.exclude_speakers:
            utterances = [u for u in utterances if str(u.speaker) not in set(c.exclude_speakers)]
        labelled = [u for u in utterances if u.labels.get(attribute)]
        if not labelled:
            raise AnoncliError(
                f"{options.corpus}: no utterance has a {attribute!r} label (a metadata.csv or --labels is needed)"
            )
        classes = sorted({str(u.labels[attribute]) for u in labelled})
        if len(classes) < 2:
            raise AnoncliError(
                f"{options.corpus}: the {attribute!r} label has a single value ({classes[0]}); nothing to hide"
            )
        speaker_level = all(
            len({u.labels[attribute] for u in labelled if u.speaker == s}) == 1 for s in {u.speaker for u in labelled}
        )
        self.train_utts, self.val_utts, self.val_speakers = speaker_split(
            labelled,
            c.val_speakers or None,
            c.val_fraction,
            c.seed,
            stratify_label=attribute if speaker_level else None,
        )
        check_split_classes(
            self.train_utts,
            self.val_utts,
            lambda u: u.labels[attribute],
            attribute,
            what=self.train_name() if c.progress else "",
        )
        self.classes = classes
        self.corpus_root = Path(options.corpus).resolve()
        self.data_fingerprint = data_fingerprint(labelled)

    def label_of(self, utt) -> int:
        """The class index of an utterance's attribute label."""
        return self.classes.index(str(utt.labels[self.attribute]))

    def check_sizes(self, train: list, val: list) -> None:
        """Raise AnoncliError unless there are at least 2 training and 1 validation utterances."""
        if len(train) < 2 or not val:
            raise AnoncliError(f"{self.options.corpus}: too few labelled utterances to train and validate")

    def model_config(self) -> dict[str, Any]:
        """The settings that describe the networks (`model_keys`): what `models.generators` builds from."""
        values = self.config.to_dict()
        return {key: values[key] for key in self.model_keys}

    def model_info(self) -> dict:
        return {"config": self.model_config(), "classes": list(self.classes), "attribute": self.attribute}

    def data_card(self, train_speakers: list[str], train: int, val: int) -> dict:
        """The card's `data` and `labels` entries."""
        return {
            "data": {
                "corpus": str(self.corpus_root),
                "train_speakers": train_speakers,
                "val_speakers": list(self.val_speakers),
                "excluded_speakers": list(self.config.exclude_speakers),
                "train_utterances": train,
                "val_utterances": val,
            },
            "labels": {"attribute": self.attribute, "classes": list(self.classes)},
        }

    def warm_up(self, steps: int, discriminators, draw) -> None:
        """`steps` cross-entropy steps of each (name, discriminator) on the attribute of real data before the game:
        with few steps (a CPU budget) a discriminator that starts at chance gives the generator no gradient
        for most of the run. `draw()` returns (inputs..., labels) for one batch."""
        from anoncli.progress import progress_bar

        for name, module in discriminators:
            module.train()
            bar = progress_bar(range(steps), desc=f"{name} warm-up", enabled=self.config.progress, leave=False)
            for _ in bar:
                *inputs, labels = draw()
                loss = nn.functional.cross_entropy(module(*inputs).float(), labels)
                self.optimize(name, loss)
                bar.set_postfix(loss=f"{loss.item():.3f}")


# --------------------------------------------------------------------------- mel-domain data


@dataclass
class MelItem:
    """One training utterance: ids, class index, its normalised log-mel (n_mels, F) in [-1, 1], and the (mu, sigma) to undo it."""

    utt_id: str
    speaker: str
    label: int
    norm: torch.Tensor  # (n_mels, F) normalised to [-1, 1]
    mu: float
    sigma: float


def _cache_key(utterances, sample_rate: int, mel: LogMel) -> str:
    digest = hashlib.sha256()
    digest.update(f"{sample_rate}|{mel.n_fft}|{mel.hop_length}|{mel.n_mels}".encode())
    for utt in utterances:
        digest.update(f"|{utt.rel_path}".encode())
    return digest.hexdigest()[:16]


def compute_mels(
    utterances, sample_rate: int, mel: LogMel, cache_dir: Path | None, progress: bool = True
) -> dict[str, torch.Tensor]:
    """utt_id -> (n_mels, F) log-mel at `sample_rate`, computed once and cached (float32)."""
    cache_file = cache_dir / f"mels-{_cache_key(utterances, sample_rate, mel)}.pt" if cache_dir else None
    if cache_file is not None and cache_file.exists():
        stored = torch.load(cache_file, map_location="cpu", weights_only=True)
        return dict(zip(stored["ids"], stored["mels"]))
    from anoncli.training.common import atomic_torch_save, resampled_waves

    mels: dict[str, torch.Tensor] = {}
    for utt, wave in resampled_waves(utterances, sample_rate, "mels", progress):
        with torch.no_grad():
            mels[utt.utt_id] = mel(wave.unsqueeze(0)).squeeze(0).contiguous()
    if cache_file is not None:
        atomic_torch_save({"ids": list(mels), "mels": list(mels.values())}, cache_file)
    return mels


def random_crops(items: list[MelItem], frames: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One random `frames`-long crop per item (short utterances edge-padded): (B, 1, n_mels, frames), labels (B,)."""
    crops = []
    for item in items:
        mel = item.norm
        if mel.shape[-1] < frames:
            mel = torch.nn.functional.pad(mel.unsqueeze(0), (0, frames - mel.shape[-1]), mode="replicate").squeeze(0)
        start = int(torch.randint(0, mel.shape[-1] - frames + 1, (1,), generator=generator))
        crops.append(mel[:, start : start + frames])
    return torch.stack(crops).unsqueeze(1), torch.tensor([i.label for i in items], dtype=torch.long)


def shuffled_batches(items: list, batch_size: int, generator: torch.Generator) -> list[list]:
    """One epoch of shuffled batches of `batch_size` items from `generator`; a last batch of one is dropped (BatchNorm)."""
    order = torch.randperm(len(items), generator=generator).tolist()
    chunks = [[items[i] for i in order[start : start + batch_size]] for start in range(0, len(order), batch_size)]
    return [chunk for chunk in chunks if len(chunk) >= 2]


# --------------------------------------------------------------------------- validation attacker


def train_attacker(
    train: list[MelItem], num_classes: int, config: MelGANConfig, device: torch.device, generator: torch.Generator
) -> AlexNetDiscriminator:
    """A classifier of the private attribute trained on original mels of the training speakers, then frozen."""
    from anoncli.progress import progress_bar

    model = AlexNetDiscriminator(num_classes, width=config.attacker_width, first_stride=config.d_first_stride).to(
        device
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    model.train()
    bar = progress_bar(range(config.attacker_steps), desc="validation attacker", enabled=config.progress, leave=False)
    for _ in bar:
        picks = torch.randint(0, len(train), (config.batch_size,), generator=generator).tolist()
        x, y = random_crops([train[i] for i in picks], config.segment_frames, generator)
        loss = nn.functional.cross_entropy(model(x.to(device)), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    freeze(model)
    return model


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no gradients: a fixed judge."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


@torch.no_grad()
def attacker_accuracy(attacker: nn.Module, mels: list[torch.Tensor], labels: list[int], device: torch.device) -> float:
    """Utterance-level accuracy (whole utterance through the adaptive-pooled CNN)."""
    if not mels:
        return float("nan")
    correct = 0
    for mel, label in zip(mels, labels):
        logits = attacker(mel.to(device).unsqueeze(0).unsqueeze(0))
        correct += int(int(logits.argmax(dim=1)) == label)
    return correct / len(mels)


# --------------------------------------------------------------------------- the mel-domain trainer


@dataclass
class MelGANConfig(GANConfig):
    """The mel-domain GANs' settings: GANConfig plus the validation attacker's width and steps and the
    weight of the L1 distortion in the selection score."""

    attacker_width: float = 0.25
    attacker_steps: int = 300
    distortion_weight: float = 1.0


def mel_presets(
    config_class: type[MelGANConfig], quick: dict[str, Any], full: dict[str, Any]
) -> dict[str, MelGANConfig]:
    """The quick (2 CPU cores, ~30 min) and full (GPU) presets of a mel-domain GAN: the shared settings,
    then the method's `quick` / `full` values."""
    shared = {"epochs": 30, "batch_size": 16, "val_every": 4, "threads": 1}
    full_shared = dict(
        shared,
        residual=False,
        epochs=100,
        batch_size=64,
        segment_frames=128,
        d_width=1.0,
        d_first_stride=1,
        attacker_width=0.5,
        attacker_steps=2000,
        d_warmup_steps=0,
        val_every=1,
        threads=8,
    )
    return {"quick": config_class(**{**shared, **quick}), "full": config_class(**{**full_shared, **full})}


class MelGANTrainer(GANTrainer):
    """The mel-domain GANs: crops of normalised log-mels in, validated by a frozen attacker; subclasses add
    `build` (networks and optimisers), `gan_step` and `anonymize_val`."""

    config_class: ClassVar[type[TrainConfig]] = MelGANConfig
    selection = ("val_score", "max")

    # ---- declared by each method
    def build(self, num_classes: int) -> None:
        """Create the networks and optimisers for `num_classes` attribute classes."""
        raise NotImplementedError

    def gan_step(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """One optimisation step on crops x (B, 1, n_mels, frames) with labels (B,); returns the losses."""
        raise NotImplementedError

    def anonymize_val(self, item: MelItem, index: int) -> torch.Tensor:
        """Normalised (n_mels, F) output for one validation utterance (eval mode, seeded)."""
        raise NotImplementedError

    def discriminators(self) -> list[tuple[str, nn.Module]]:
        """(optimiser name, classifier) pairs whose first outputs are the attribute classes, for the warm-up."""
        return [("discriminator", self.discriminator)]

    def extra_validation(self, originals: list[MelItem], outputs: list[torch.Tensor]) -> dict[str, float]:
        """Method-specific validation figures on the validation outputs (none by default)."""
        return {}

    def score(self, metrics: dict[str, float]) -> float:
        """Higher is better: validation privacy minus a distortion penalty."""
        return metrics["val_privacy"] - self.config.distortion_weight * 100.0 * metrics["val_l1"]

    # the one-generator, one-discriminator methods (GenGAN, PSEGAN): `build` sets these four
    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "discriminator": self.discriminator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt_g, "discriminator": self.opt_d}

    def inference_modules(self) -> list[str]:
        return ["generator"]

    # ---- the Trainer hooks
    def setup(self) -> None:
        c = self.config
        self.split()
        mel = LogMel(sample_rate=c.sample_rate)
        # a shared cache folder (--param cache_dir=DIR) lets several runs reuse one computation
        cache_dir = Path(c.cache_dir).expanduser() if c.cache_dir else self.run.cache_dir
        cache_dir.mkdir(parents=True, exist_ok=True)
        labelled = self.train_utts + self.val_utts
        mels = compute_mels(labelled, c.sample_rate, mel, cache_dir, progress=c.progress)

        def items(utts) -> list[MelItem]:
            out = []
            for utt in utts:
                if utt.utt_id in mels:
                    norm, mu, sigma = normalize(mels[utt.utt_id])
                    out.append(MelItem(utt.utt_id, str(utt.speaker), self.label_of(utt), norm, float(mu), float(sigma)))
            return out

        self.train, self.val = items(self.train_utts), items(self.val_utts)
        self.skipped = len(labelled) - len(mels)
        self.check_sizes(self.train, self.val)
        self.build(len(self.classes))
        self.attacker = AlexNetDiscriminator(
            len(self.classes), width=c.attacker_width, first_stride=c.d_first_stride
        ).to(self.device)
        self.val_acc_original: float | None = None

    def start(self) -> None:
        """Train the frozen validation attacker and warm the discriminators up, each from its own seed."""
        c = self.config
        attacker_rng = torch.Generator()
        attacker_rng.manual_seed(c.seed + 1)
        self.attacker = train_attacker(self.train, len(self.classes), c, self.device, attacker_rng)
        if c.d_warmup_steps:
            warm_rng = torch.Generator()
            warm_rng.manual_seed(c.seed + 2)

            def draw():
                picks = torch.randint(0, len(self.train), (c.batch_size,), generator=warm_rng).tolist()
                x, y = random_crops([self.train[i] for i in picks], c.segment_frames, warm_rng)
                return x.to(self.device), y.to(self.device)

            self.warm_up(c.d_warmup_steps, self.discriminators(), draw)

    def extra_state(self) -> dict:
        return {"attacker": self.attacker.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.attacker.load_state_dict(state["attacker"])
        freeze(self.attacker)

    def batches(self, epoch: int) -> list[list[MelItem]]:
        return shuffled_batches(self.train, self.config.batch_size, self.rng)

    def train_step(self, batch: list[MelItem]) -> dict[str, float]:
        x, labels = random_crops(batch, self.config.segment_frames, self.rng)
        # per-utterance (mu, sigma) of the crops, for losses that need the unnormalised log-mel
        self.batch_stats = torch.tensor([[i.mu, i.sigma] for i in batch], device=self.device)
        return self.gan_step(x.to(self.device), labels.to(self.device))

    def validate(self) -> dict[str, float]:
        """Frozen attacker accuracy on the validation outputs, normalised privacy (100 = chance), L1 distortion and the score."""
        labels = [item.label for item in self.val]
        if self.val_acc_original is None:
            self.val_acc_original = attacker_accuracy(self.attacker, [i.norm for i in self.val], labels, self.device)
        outputs = [self.anonymize_val(item, index) for index, item in enumerate(self.val)]
        acc_anon = attacker_accuracy(self.attacker, outputs, labels, self.device)
        metrics = {
            "val_attacker_acc": acc_anon,
            "val_attacker_acc_original": self.val_acc_original,
            "val_privacy": normalised_accuracy(acc_anon, 1.0 / len(self.classes), full=1.0),
            "val_l1": sum(float((o.cpu() - i.norm).abs().mean()) for o, i in zip(outputs, self.val))
            / max(1, len(outputs)),
        }
        metrics.update(self.extra_validation(self.val, outputs))
        metrics["val_score"] = self.score(metrics)
        return metrics

    def card(self, result) -> dict:
        card = self.data_card(sorted({i.speaker for i in self.train}), len(self.train), len(self.val))
        card["data"]["skipped_files"] = self.skipped
        card["validation"] = {
            "attacker": "AlexNet-like CNN trained on the training speakers' original mels, frozen",
            "attacker_acc_original": result.best_metrics.get("val_attacker_acc_original", self.val_acc_original),
            **result.best_metrics,
        }
        return card
