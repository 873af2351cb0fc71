"""What the PCMelGAN, GenGAN and PSEGAN trainers share.

* `prepare_data`: open the corpus, keep the utterances that have the private
  attribute, split speaker-disjointly, compute the log-mels once per run
  (cached in RUN/cache) and normalise them per utterance;
* random fixed-length crops for training batches (utterances of any length);
* a frozen *validation attacker*: a small AlexNet classifier trained once on
  the training speakers' original mels, then applied to the generator's output
  for the held-out validation speakers (an "ignorant" attacker that the
  generator never saw);
* `GANTrainer`: the epoch loop with checkpoint-every-epoch, resume, progress (a bar on a terminal, a line per epoch in a log)
  progress, RUN/log.parquet, model selection on a validation
  privacy-utility score, RUN/model.json and registration in the model store.
Each method subclasses `GANTrainer` with its models, one training step and
its inference conditioning.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from anoncli import modelstore
from anoncli.errors import AnoncliError
from anoncli.models.discriminator import AlexNetDiscriminator
from anoncli.scoring.metrics import normalised_accuracy
from anoncli.synthesis.mel import LogMel, normalize
from anoncli.training import TrainOptions
from anoncli.training.common import (
    RunFolder, resolve_run_config, autocast, limit_cpu_threads, pick_device,
    rng_state, seed_everything, set_rng_state, speaker_split,
)

CHECKPOINT_FORMAT = 1


# --------------------------------------------------------------------------- data


@dataclass
class MelItem:
    """One training utterance: ids, class index, its normalised log-mel (n_mels, F) in [-1, 1], and the (mu, sigma) to undo it."""

    utt_id: str
    speaker: str
    label: int
    norm: torch.Tensor      # (n_mels, F) normalised to [-1, 1]
    mu: float
    sigma: float


@dataclass
class GANData:
    """A speaker-disjoint train/validation split of normalised mels, the class names and the files skipped as unreadable."""

    classes: list[str]
    train: list[MelItem]
    val: list[MelItem]
    val_speakers: list[str]
    train_speakers: list[str]
    skipped: int


def _cache_key(utterances, sample_rate: int, mel: LogMel) -> str:
    digest = hashlib.sha256()
    digest.update(f"{sample_rate}|{mel.n_fft}|{mel.hop_length}|{mel.n_mels}".encode())
    for utt in utterances:
        digest.update(f"|{utt.rel_path}".encode())
    return digest.hexdigest()[:16]


def compute_mels(utterances, sample_rate: int, mel: LogMel, cache_dir: Path | None, progress: bool = True) -> dict[str, torch.Tensor]:
    """utt_id -> (n_mels, F) log-mel at `sample_rate`, computed once and cached (float32)."""
    cache_file = cache_dir / f"mels-{_cache_key(utterances, sample_rate, mel)}.pt" if cache_dir else None
    if cache_file is not None and cache_file.exists():
        stored = torch.load(cache_file, map_location="cpu", weights_only=True)
        return dict(zip(stored["ids"], stored["mels"]))
    from anoncli.training.common import resampled_waves

    mels: dict[str, torch.Tensor] = {}
    for utt, wave in resampled_waves(utterances, sample_rate, "mels", progress):
        with torch.no_grad():
            mels[utt.utt_id] = mel(wave.unsqueeze(0)).squeeze(0).contiguous()
    if cache_file is not None:
        from anoncli.training.common import atomic_torch_save

        atomic_torch_save({"ids": list(mels), "mels": list(mels.values())}, cache_file)
    return mels


def _filter_speakers(utterances, keep: list[str], drop: list[str]):
    if keep:
        utterances = [u for u in utterances if str(u.speaker) in set(keep)]
    if drop:
        utterances = [u for u in utterances if str(u.speaker) not in set(drop)]
    return utterances


def prepare_data(options: TrainOptions, config: dict, run: RunFolder) -> GANData:
    """Open the corpus, keep labelled utterances, split speakers, compute (cached) mels and normalise them.

    Raises AnoncliError when the attribute column is missing, unlabelled or has a single value.
    """
    corpus = options.open_corpus()
    attribute = config["attribute"]
    if corpus.label_columns and attribute not in corpus.label_columns:
        raise AnoncliError(
            f"{options.corpus}: no {attribute!r} label column (columns: {', '.join(corpus.label_columns)}); "
            "choose one with --attribute"
        )
    utterances = _filter_speakers(corpus.utterances, config["speakers"], config["exclude_speakers"])
    labelled = [u for u in utterances if u.labels.get(attribute)]
    if not labelled:
        raise AnoncliError(f"{options.corpus}: no utterance has a {attribute!r} label (a metadata.csv or --labels is needed)")
    classes = sorted({str(u.labels[attribute]) for u in labelled})
    if len(classes) < 2:
        raise AnoncliError(f"{options.corpus}: the {attribute!r} label has a single value ({classes[0]}); nothing to hide")
    speaker_level = all(
        len({u.labels[attribute] for u in labelled if u.speaker == s}) == 1 for s in {u.speaker for u in labelled}
    )
    train_utts, val_utts, val_speakers = speaker_split(
        labelled, config["val_speakers"] or None, config["val_fraction"], options.seed,
        stratify_label=attribute if speaker_level else None,
    )
    mel = LogMel(sample_rate=config["sample_rate"])
    # a shared cache folder (--param cache_dir=DIR) lets several runs reuse one computation
    cache_dir = Path(config["cache_dir"]).expanduser() if config.get("cache_dir") else run.cache_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    mels = compute_mels(labelled, config["sample_rate"], mel, cache_dir, progress=config.get("progress", True))

    def items(utts) -> list[MelItem]:
        """`MelItem`s of the utterances whose mel could be computed."""
        out = []
        for utt in utts:
            if utt.utt_id not in mels:
                continue
            norm, mu, sigma = normalize(mels[utt.utt_id])
            out.append(MelItem(utt.utt_id, str(utt.speaker), classes.index(str(utt.labels[attribute])),
                               norm, float(mu), float(sigma)))
        return out

    train, val = items(train_utts), items(val_utts)
    return GANData(classes, train, val, val_speakers, sorted({i.speaker for i in train}),
                   skipped=len(labelled) - len(mels))


def random_crops(items: list[MelItem], frames: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One random `frames`-long crop per item (short utterances edge-padded): (B, 1, n_mels, frames), labels (B,)."""
    crops = []
    for item in items:
        mel = item.norm
        if mel.shape[-1] < frames:
            mel = torch.nn.functional.pad(mel.unsqueeze(0), (0, frames - mel.shape[-1]), mode="replicate").squeeze(0)
        start = int(torch.randint(0, mel.shape[-1] - frames + 1, (1,), generator=generator))
        crops.append(mel[:, start:start + frames])
    return torch.stack(crops).unsqueeze(1), torch.tensor([i.label for i in items], dtype=torch.long)


def batches(items: list[MelItem], batch_size: int, generator: torch.Generator):
    """Shuffled batches of `batch_size` items from `generator`; a last batch of one is dropped (BatchNorm)."""
    order = torch.randperm(len(items), generator=generator).tolist()
    # drop a last batch of 1: BatchNorm cannot train on it
    for start in range(0, len(order), batch_size):
        chunk = [items[i] for i in order[start:start + batch_size]]
        if len(chunk) >= 2:
            yield chunk


# --------------------------------------------------------------------------- validation attacker


def train_attacker(train: list[MelItem], num_classes: int, config: dict, device: torch.device,
                   generator: torch.Generator, progress: bool = True) -> AlexNetDiscriminator:
    """A classifier of the private attribute trained on original mels of the training speakers, then frozen."""
    from anoncli.progress import progress_bar

    model = AlexNetDiscriminator(num_classes, width=config["attacker_width"], first_stride=config["d_first_stride"]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    model.train()
    steps = config["attacker_steps"]
    bar = progress_bar(range(steps), desc="validation attacker", enabled=progress, leave=False)
    for _ in bar:
        picks = torch.randint(0, len(train), (config["batch_size"],), generator=generator).tolist()
        x, y = random_crops([train[i] for i in picks], config["segment_frames"], generator)
        loss = nn.functional.cross_entropy(model(x.to(device)), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
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


# --------------------------------------------------------------------------- trainer


class GANTrainer:
    """Epoch loop shared by the three mel-domain GANs; subclasses define the models and one step."""

    method: str = ""
    default_attribute: str = "gender"
    presets: dict[str, dict] = {}
    # keys of the config that describe the network (stored in the checkpoint for inference)
    model_keys: tuple[str, ...] = ("sample_rate", "channels", "residual")

    def __init__(self, options: TrainOptions):
        self.options = options
        config = resolve_run_config(self.presets, options)
        config["attribute"] = options.attribute or config.get("attribute") or self.default_attribute
        config["seed"] = options.seed
        self.config = config
        self.device = pick_device(options.device)
        self.progress = config.get("progress", True)

    # ---- to be provided by subclasses
    def build(self, num_classes: int) -> None:
        """Create the networks and optimizers for `num_classes` attribute classes."""
        raise NotImplementedError

    # The defaults cover the one-generator, one-discriminator trainers (GenGAN, PSEGAN):
    # `build` sets self.generator, self.discriminator, self.opt_g and self.opt_d.
    def modules(self) -> dict[str, nn.Module]:
        """The trained networks by name (checkpointed under `models`)."""
        return {"generator": self.generator, "discriminator": self.discriminator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers by name (checkpointed under `optimizers`)."""
        return {"generator": self.opt_g, "discriminator": self.opt_d}

    def train_step(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """One optimisation step on crops x (B, 1, n_mels, frames) with labels (B,); returns the losses as floats."""
        raise NotImplementedError

    def anonymize_val(self, item: MelItem, index: int) -> torch.Tensor:
        """Normalised (n_mels, F) output for one validation utterance (eval mode, seeded)."""
        raise NotImplementedError

    def inference_modules(self) -> list[str]:
        """Names of the modules an anonymizer needs (saved in the checkpoint's `models`)."""
        return ["generator"]

    def extra_validation(self, originals: list[MelItem], outputs: list[torch.Tensor]) -> dict[str, float]:
        """Method-specific validation figures on the validation outputs (none by default)."""
        return {}

    def discriminators(self) -> list[tuple[nn.Module, torch.optim.Optimizer]]:
        """(classifier, optimizer) pairs whose first outputs are the attribute classes, for the warm-up."""
        return [(self.discriminator, self.opt_d)]

    def warm_up_discriminators(self, data: GANData) -> None:
        """Teach the discriminators the attribute on real mels before the game starts.

        With few steps (a CPU budget) a discriminator that starts at chance gives
        the generator no gradient for most of the run; a warmed-up one does
        from the first step. Its own seed: it is not the validation attacker.
        """
        steps = self.config.get("d_warmup_steps", 0)
        if not steps:
            return
        from anoncli.progress import progress_bar

        generator = torch.Generator()
        generator.manual_seed(self.config["seed"] + 2)
        for module, optimizer in self.discriminators():
            module.train()
            bar = progress_bar(range(steps), desc="discriminator warm-up", enabled=self.progress, leave=False)
            for _ in bar:
                picks = torch.randint(0, len(data.train), (self.config["batch_size"],), generator=generator).tolist()
                x, y = random_crops([data.train[i] for i in picks], self.config["segment_frames"], generator)
                loss = nn.functional.cross_entropy(module(x.to(self.device)), y.to(self.device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                bar.set_postfix(loss=f"{loss.item():.3f}")

    def score(self, metrics: dict[str, float]) -> float:
        """Higher is better: validation privacy minus a distortion penalty."""
        return metrics["val_privacy"] - self.config["distortion_weight"] * 100.0 * metrics["val_l1"]

    # ---- shared machinery
    def val_generator(self, index: int) -> torch.Generator:
        """The seeded generator of validation utterance `index` (same noise every epoch)."""
        generator = torch.Generator()
        generator.manual_seed(self.config["seed"] * 100003 + index)
        return generator

    def checkpoint_state(self, epoch: int, best_score: float, best_epoch: int, data: GANData, metrics: dict) -> dict:
        """Everything a resume or an anonymizer needs: networks, optimizers, attacker, config, classes, best score and RNG states."""
        return {
            "format": CHECKPOINT_FORMAT,
            "method": self.method,
            "epoch": epoch,
            "config": {k: self.config[k] for k in self.model_keys if k in self.config},
            "train_config_json": json.dumps(self.config, default=str),
            "classes": list(data.classes),
            "attribute": self.config["attribute"],
            "models": {name: module.state_dict() for name, module in self.modules().items()},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers().items()},
            "attacker": self.attacker.state_dict(),
            "best_score": best_score,
            "best_epoch": best_epoch,
            "metrics": {k: float(v) for k, v in metrics.items()},
            "rng": rng_state(),
            "data_rng": self.data_rng.get_state(),
        }

    def validate(self, data: GANData) -> dict[str, float]:
        """Frozen attacker accuracy on the validation outputs, normalised privacy (100 = chance), L1 distortion and the score."""
        for module in self.modules().values():
            module.eval()
        outputs = [self.anonymize_val(item, index) for index, item in enumerate(data.val)]
        labels = [item.label for item in data.val]
        chance = 1.0 / len(data.classes)
        acc_anon = attacker_accuracy(self.attacker, outputs, labels, self.device)
        l1 = sum(float((o.cpu() - i.norm).abs().mean()) for o, i in zip(outputs, data.val)) / max(1, len(outputs))
        metrics = {
            "val_attacker_acc": acc_anon,
            "val_attacker_acc_original": self.val_acc_original,
            "val_privacy": normalised_accuracy(acc_anon, chance, full=1.0),
            "val_l1": l1,
        }
        metrics.update(self.extra_validation(data.val, outputs))
        metrics["val_score"] = self.score(metrics)
        for module in self.modules().values():
            module.train()
        return metrics

    def run(self) -> dict:
        """Train (or resume) in the run folder, checkpointing every epoch; write the card and register the best model.

        Returns the run folder, best epoch and score, validation figures and the registered
        path. Raises AnoncliError for too few labelled utterances or a mismatched run folder.
        """
        options, config = self.options, self.config
        limit_cpu_threads(config.get("threads"))
        run_config = {"method": self.method, **config}
        volatile = ("epochs", "progress", "register", "threads", "amp", "cache_dir")
        run = RunFolder(options.out, run_config, overwrite=options.overwrite,
                        resume_keys=[k for k in run_config if k not in volatile])
        seed_everything(options.seed)
        self.data_rng = torch.Generator()
        self.data_rng.manual_seed(options.seed)
        started = time.time()
        data = prepare_data(options, config, run)
        if len(data.train) < 2 or not data.val:
            raise AnoncliError(f"{options.corpus}: too few labelled utterances to train and validate")
        self.build(len(data.classes))
        for module in self.modules().values():
            module.to(self.device)
        state = run.resume(self.device)
        self.attacker = AlexNetDiscriminator(len(data.classes), width=config["attacker_width"],
                                             first_stride=config["d_first_stride"]).to(self.device)
        start_epoch, best_score, best_epoch = 0, -math.inf, -1
        if state is not None:
            for name, module in self.modules().items():
                module.load_state_dict(state["models"][name])
            for name, opt in self.optimizers().items():
                opt.load_state_dict(state["optimizers"][name])
            self.attacker.load_state_dict(state["attacker"])
            self.attacker.eval()
            for parameter in self.attacker.parameters():
                parameter.requires_grad_(False)
            start_epoch, best_score, best_epoch = int(state["epoch"]), float(state["best_score"]), int(state["best_epoch"])
            set_rng_state(state.get("rng"))
            self.data_rng.set_state(state["data_rng"])
            run.truncate_log(start_epoch)
            print(f"resuming {run.root} after epoch {start_epoch}", file=sys.stderr)
        else:
            attacker_rng = torch.Generator()
            attacker_rng.manual_seed(options.seed + 1)
            self.attacker = train_attacker(data.train, len(data.classes), config, self.device, attacker_rng, self.progress)
            self.warm_up_discriminators(data)
        self.val_acc_original = attacker_accuracy(self.attacker, [i.norm for i in data.val], [i.label for i in data.val], self.device)
        metrics: dict[str, float] = dict(state["metrics"]) if state is not None else {}

        from anoncli.progress import progress_bar

        for module in self.modules().values():
            module.train()
        for epoch in range(start_epoch + 1, config["epochs"] + 1):
            sums: dict[str, float] = {}
            count = 0
            epoch_batches = list(batches(data.train, config["batch_size"], self.data_rng))
            bar = progress_bar(epoch_batches, desc=f"{self.method} epoch {epoch}/{config['epochs']}", unit="batch",
                               enabled=self.progress, log_step_percent=100, leave=False)
            for batch_items in bar:
                x, labels = random_crops(batch_items, config["segment_frames"], self.data_rng)
                # per-utterance (mu, sigma) of the crops, for losses that need the unnormalised log-mel
                self.batch_stats = torch.tensor([[i.mu, i.sigma] for i in batch_items], device=self.device)
                with autocast(self.device, config.get("amp", True)):
                    losses = self.train_step(x.to(self.device), labels.to(self.device))
                for key, value in losses.items():
                    sums[key] = sums.get(key, 0.0) + value
                count += 1
                bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()})
            means = {k: v / max(1, count) for k, v in sums.items()}
            row = {"epoch": epoch, "steps": count, "elapsed_s": time.time() - started, **means}
            validate_now = epoch % config["val_every"] == 0 or epoch == config["epochs"]
            best = False
            if validate_now:
                metrics = self.validate(data)
                row.update(metrics)
                if metrics["val_score"] > best_score:
                    best_score, best_epoch, best = metrics["val_score"], epoch, True
            run.log(row)
            run.save(self.checkpoint_state(epoch, best_score, best_epoch, data, metrics), best=best)
            shown = {k: round(v, 4) for k, v in row.items() if k not in ("time",) and isinstance(v, float)}
            print(f"{self.method} epoch {epoch}: {json.dumps(shown)}", file=sys.stderr)

        best_row = next((r for r in run.log_rows if r.get("epoch") == best_epoch), {})
        card = {
            "method": self.method,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "data": {
                "corpus": str(Path(options.corpus).resolve()),
                "train_speakers": data.train_speakers,
                "val_speakers": data.val_speakers,
                "train_utterances": len(data.train),
                "val_utterances": len(data.val),
                "skipped_files": data.skipped,
            },
            "labels": {"attribute": config["attribute"], "classes": data.classes},
            "config": config,
            "device": str(self.device),
            "best_epoch": best_epoch,
            "validation": {
                "attacker": "AlexNet-like CNN trained on the training speakers' original mels, frozen",
                "attacker_acc_original": self.val_acc_original,
                **{k: v for k, v in best_row.items() if k.startswith("val_")},
            },
            "train_seconds_this_session": round(time.time() - started, 1),
        }
        run.write_card(card)
        registered = None
        if config.get("register") and run.best_path.exists():
            registered = str(modelstore.register(self.method, run.root))
        return {"run": str(run.root), "best_epoch": best_epoch, "best_score": best_score,
                "validation": card["validation"], "registered": registered}


def common_presets(**overrides: Any) -> dict[str, dict]:
    """The quick (2 CPU cores, ~30 min) and full (GPU) settings every GAN shares; methods add theirs."""
    quick = {
        "sample_rate": 16000,
        "channels": [8, 16, 32, 64, 128],
        "residual": True,
        "epochs": 30,
        "batch_size": 16,
        "segment_frames": 64,
        "d_width": 0.25,
        "d_first_stride": 2,
        "attacker_width": 0.25,
        "attacker_steps": 300,
        "d_warmup_steps": 200,
        "val_every": 4,
        "val_fraction": 0.2,
        "val_speakers": [],
        "speakers": [],
        "exclude_speakers": [],
        "distortion_weight": 1.0,
        "threads": 1,
        "amp": True,
        "register": False,  # opt-in (--register): a trial run must not replace the model `anonymize` uses
        "progress": True,
        "attribute": None,
        "cache_dir": "",
    }
    full = dict(quick, residual=False, epochs=100, batch_size=64, segment_frames=128, d_width=1.0, d_first_stride=1,
                attacker_width=0.5, attacker_steps=2000, d_warmup_steps=0, val_every=1, threads=8)
    quick.update(overrides.get("quick", {}))
    full.update(overrides.get("full", {}))
    return {"quick": quick, "full": full}
