"""`anoncli train --method world_phone`: the phone classifier, phone inventory and pseudo-speakers of `--method world_phone`.

Data: every utterance of CORPUS with a speaker and a gender label, minus
the held-out speakers (`exclude_speakers`, and every labelled speaker of
the folder `exclude_corpus`), exactly as `anoncli train --method
world_norm` selects them (this trainer extends it). No transcript is
needed. Once per run (cached in `RUN/cache/`, so a resumed run reads no
audio), each utterance is resampled to 16 kHz and

* analysed into compact WORLD features (`anoncli.synthesis.world_features`);
* labelled per 10 ms frame with pocketsphinx's phone-loop decoding
  (`anoncli.synthesis.phone_inventory.PhoneLabeller`: its bundled en-us
  acoustic model and phonetic language model; 39 CMU phones and silence).

From these, deterministically: the pseudo-speaker distribution of
world_norm (`fit_pseudo_speakers` on each speaker's pooled statistics;
module `sampler`) and the phone inventory (`fit_inventory`: per speaker
and phone, the shrunk centroid of the coded envelope and aperiodicity of
the frames with that label; module `inventory`).

Trained by gradient: the phone classifier (`PhoneClassifier`, module
`classifier`), cross-entropy on random batches of frames of the training
speakers, validated by frame accuracy against the labels on a
speaker-disjoint tenth of them (`val_fraction`, every gender split alike),
`val_acc`, the selection figure. The inventory holds every training
speaker, the validation ones too (they are not held out: the held-out
speakers are those excluded).

RUN gets the loop's checkpoints (`--checkpoint RUN` loads `best.pt`) and the
shipped form, `model.safetensors` and `card.json`, which is copied into
`anoncli/pretrained/world_phone/` to ship a model (recipes/world_phone/).

Settings (`--param`): those of world_norm (`attribute`, `exclude_speakers`,
`exclude_corpus`, `full_covariance`, `clip_sigma`), the classifier's
`hidden` width, `lr`, `val_fraction`, the inventory's `prior_frames`, and
the model's default `power`, `pool_size` and `detail`. The rate is 16 kHz (the
labeller's). Raises AnoncliError (exit 2) as world_norm's trainer does,
and when the split leaves no validation speaker.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from anoncli.errors import AnoncliError
from anoncli.progress import write as progress_line
from anoncli.training.loop import FitResult, TrainConfig
from anoncli.training.world_norm import WorldNormConfig, WorldNormTrainer

CACHE_VERSION = 1


@dataclass
class WorldPhoneConfig(WorldNormConfig):
    """world_norm's settings plus the classifier (`hidden` units, `lr`), the validation speakers' share
    (`val_fraction`), the inventory's shrinkage (`prior_frames`) and the model's defaults at anonymization
    (`power`: posterior sharpening; `pool_size`: speakers mixed per utterance; `detail`: the share of the
    source's within-phone detail kept). `val_frames`: at most this many validation frames are scored."""

    hidden: int = 256
    lr: float = 2e-3
    val_fraction: float = 0.1
    prior_frames: float = 20.0
    power: float = 1.0
    pool_size: int = 4
    detail: float = 0.3
    val_frames: int = 60000

    def check(self) -> None:
        """Raise AnoncliError for settings out of range (the rate must be 16 kHz: the labeller's)."""
        TrainConfig.check(self)
        if self.sample_rate != 16000:
            raise AnoncliError(f"--param sample_rate={self.sample_rate}: world_phone works at 16000 Hz only")
        if not 0.0 < self.val_fraction < 0.5:
            raise AnoncliError(f"--param val_fraction={self.val_fraction}: expected a share in (0, 0.5)")
        if self.hidden < 8 or self.pool_size < 1 or not self.power > 0 or self.prior_frames < 0:
            raise AnoncliError("--param hidden >= 8, pool_size >= 1, power > 0 and prior_frames >= 0 are needed")
        if not 0.0 <= self.detail <= 1.0:
            raise AnoncliError(f"--param detail={self.detail}: expected a value in [0, 1]")
        if not self.clip_sigma > 0:
            raise AnoncliError(f"--param clip_sigma={self.clip_sigma}: expected a positive number")


PRESETS = {
    "default": WorldPhoneConfig(epochs=6, batch_size=512, steps_per_epoch=250, amp=False, threads=0),
    "quick": WorldPhoneConfig(epochs=2, batch_size=256, steps_per_epoch=20, amp=False, threads=0, hidden=64),
}


class Inventory(nn.Module):
    """The phone inventory as buffers (the checkpoint's `models["inventory"]`): centroids (S, P, D) float16,
    counts (S, P) int64, genders (S,) int64."""

    def __init__(self, speakers: int, phones: int, dim: int):
        super().__init__()
        self.register_buffer("centroids", torch.zeros(speakers, phones, dim, dtype=torch.float16))
        self.register_buffer("counts", torch.zeros(speakers, phones, dtype=torch.int64))
        self.register_buffer("genders", torch.zeros(speakers, dtype=torch.int64))

    def load(self, inventory) -> None:
        """Copy a `PhoneInventory` into the buffers."""
        self.centroids.copy_(torch.from_numpy(np.asarray(inventory.centroids, dtype=np.float16)))
        self.counts.copy_(torch.from_numpy(np.asarray(inventory.counts, dtype=np.int64)))
        self.genders.copy_(torch.from_numpy(np.asarray(inventory.genders, dtype=np.int64)))


class WorldPhoneTrainer(WorldNormTrainer):
    """`anoncli train --method world_phone` (see the module text)."""

    method = "world_phone"
    config_class = WorldPhoneConfig
    presets = PRESETS
    default_preset = "default"
    selection = ("val_acc", "max")

    def setup(self) -> None:
        """world_norm's data selection, then features and labels (cached), the sampler, the inventory and
        the classifier with its optimiser."""
        super().setup()
        from anoncli.synthesis.phone_inventory import PHONES, PhoneClassifier, fit_inventory
        from anoncli.synthesis.world_norm import fit_pseudo_speakers

        data = self._frames()
        speakers = [str(s) for s in data["speakers"]]
        self.pool_speakers = speakers
        index = {s: i for i, s in enumerate(speakers)}
        gender_index = np.array([self.classes.index(self.genders[s]) for s in speakers], dtype=np.int64)
        offsets = data["offsets"]
        utt_speaker = data["utt_speaker"]
        targets, labels = data["targets"], data["labels"].astype(np.int64)
        spans = list(zip(offsets[:-1], offsets[1:]))
        inventory = fit_inventory(
            [targets[a:b] for a, b in spans],
            [labels[a:b] for a, b in spans],
            [int(s) for s in utt_speaker],
            gender_index,
            self.config.prior_frames,
        )
        self.inventory = Inventory(*inventory.centroids.shape)
        self.inventory.load(inventory)
        from anoncli.synthesis.world_norm import Stats

        stats = {}
        for i, s in enumerate(speakers):
            vector = data["stat_vectors"][i]
            if np.isnan(vector).any():
                continue
            stats[s] = Stats.from_vector(vector)
            stats[s].mcep_corr = data["stat_corrs"][i]
        self.without_f0 = sorted(set(speakers) - set(stats))
        try:
            fitted = fit_pseudo_speakers(stats, self.genders, tuple(self.classes), self.config.clip_sigma)
        except ValueError as err:
            raise AnoncliError(f"{self.options.corpus}: {err}") from None
        self.sampler.load_arrays(fitted.arrays())
        # speaker-disjoint validation: every k-th speaker of each gender (sorted), at least one per gender
        val = set()
        for g in self.classes:
            members = [s for s in speakers if self.genders[s] == g]
            step = max(2, int(round(1.0 / self.config.val_fraction)))
            val |= set(members[step // 2 :: step] or members[:1])
        frame_speaker = np.repeat(utt_speaker, np.diff(offsets))
        is_val = np.isin(frame_speaker, [index[s] for s in val])
        self.val_speakers = sorted(val)
        self.inputs = torch.from_numpy(data["inputs"])
        utt_of_frame = np.repeat(np.arange(len(spans)), np.diff(offsets))
        self.starts = torch.from_numpy(offsets[:-1][utt_of_frame].astype(np.int64))
        self.ends = torch.from_numpy(offsets[1:][utt_of_frame].astype(np.int64) - 1)
        self.labels = torch.from_numpy(labels)
        self.train_index = torch.from_numpy(np.flatnonzero(~is_val))
        val_index = np.flatnonzero(is_val)
        if self.train_index.numel() == 0 or val_index.size == 0:
            raise AnoncliError(f"{self.options.corpus}: too few speakers for a speaker-disjoint validation split")
        if val_index.size > self.config.val_frames:  # an even subsample: the same frames every validation
            val_index = val_index[np.linspace(0, val_index.size - 1, self.config.val_frames).astype(np.int64)]
        self.val_index = torch.from_numpy(val_index)
        self.classifier = PhoneClassifier(self.config.hidden, len(PHONES))
        self.optimizer = torch.optim.Adam(self.classifier.parameters(), lr=self.config.lr)
        if self.config.progress:
            progress_line(
                f"world_phone: {len(self.train_index)} training and {len(val_index)} validation frames, "
                f"{len(val)} validation speakers; inventory of {len(speakers)} speakers"
            )

    def _frames(self) -> dict[str, np.ndarray]:
        """Features, labels and speaker statistics of the training utterances: read from RUN/cache when this
        data was analysed before, else computed (WORLD analysis and phone-loop decoding) and cached."""
        from anoncli.atomic import atomic_write_bytes

        cache = self.run.cache_dir / f"frames-v{CACHE_VERSION}-{self.data_fingerprint}.npz"
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as saved:
                return {k: saved[k] for k in saved.files}
        data = self._analyse()
        import io

        buffer = io.BytesIO()
        np.savez(buffer, **data)
        atomic_write_bytes(cache, buffer.getvalue())
        return data

    def _analyse(self) -> dict[str, np.ndarray]:
        from collections import defaultdict

        from anoncli.synthesis import world_features
        from anoncli.synthesis.phone_inventory import PhoneLabeller, frame_inputs, labels_at_frames
        from anoncli.synthesis.world_norm import STAT_DIM, pool_stats
        from anoncli.training.common import resampled_waves

        rate = self.config.sample_rate
        labeller = PhoneLabeller()
        inputs, targets, labels, lengths, utt_names = [], [], [], [], []
        per_speaker = defaultdict(list)
        for utt, wave in resampled_waves(
            self.train_utts, rate, "WORLD analysis and phone labels", self.config.progress
        ):
            x = wave.numpy()
            if len(x) < world_features.min_samples(rate):
                progress_line(f"world_phone: {utt.path} left out (shorter than a WORLD frame)")
                continue
            features = world_features.analyse(x, rate)
            per_speaker[str(utt.speaker)].append(features.with_(bap=features.bap[:, :0]))
            inputs.append(frame_inputs(features))
            targets.append(np.column_stack([features.mcep, features.bap]).astype(np.float32))
            labels.append(labels_at_frames(labeller.labels(x), len(features.mcep)).astype(np.int8))
            lengths.append(len(features.mcep))
            utt_names.append(str(utt.speaker))
        if not inputs:
            raise AnoncliError(f"{self.options.corpus}: no training utterance could be analysed")
        speakers = sorted(per_speaker)  # a speaker none of whose files decodes is left out
        index = {s: i for i, s in enumerate(speakers)}
        vectors = np.full((len(speakers), STAT_DIM), np.nan)
        corrs = np.zeros((len(speakers), world_features.N_MCEP, world_features.N_MCEP))
        for s, items in per_speaker.items():
            stats = pool_stats(items)
            if stats.f0_mean is not None and stats.mcep_corr is not None:
                vectors[index[s]] = stats.vector
                corrs[index[s]] = stats.mcep_corr
        utt_speaker = [index[s] for s in utt_names]
        return {
            "inputs": np.concatenate(inputs),
            "targets": np.concatenate(targets),
            "labels": np.concatenate(labels),
            "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            "utt_speaker": np.asarray(utt_speaker, dtype=np.int64),
            "speakers": np.asarray(speakers),
            "stat_vectors": vectors,
            "stat_corrs": corrs,
        }

    def modules(self) -> dict[str, nn.Module]:
        return {"classifier": self.classifier, "inventory": self.inventory, "sampler": self.sampler}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"classifier": self.optimizer}

    def batches(self, epoch: int):
        n, size = self.train_index.numel(), self.config.batch_size
        return [
            self.train_index[torch.randint(0, n, (size,), generator=self.rng)]
            for _ in range(self.config.steps_per_epoch or max(1, n // size))
        ]

    def _inputs(self, index: torch.Tensor) -> torch.Tensor:
        from anoncli.synthesis.phone_inventory import with_context

        return with_context(self.inputs, index, self.starts[index], self.ends[index]).to(self.device)

    def train_step(self, index: torch.Tensor) -> dict[str, float]:
        logits = self.classifier(self._inputs(index))
        loss = nn.functional.cross_entropy(logits, self.labels[index].to(self.device))
        self.optimize("classifier", loss)
        return {"loss": loss.item()}

    def validate(self) -> dict[str, float]:
        """Frame accuracy (`val_acc`, %) and cross-entropy against the phone-loop labels on the validation speakers."""
        correct, loss, count = 0.0, 0.0, 0
        for chunk in torch.split(self.val_index, 8192):
            logits = self.classifier(self._inputs(chunk))
            target = self.labels[chunk].to(self.device)
            correct += float((logits.argmax(dim=1) == target).sum())
            loss += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
            count += chunk.numel()
        return {"val_acc": 100.0 * correct / max(1, count), "val_loss": loss / max(1, count)}

    def model_info(self) -> dict:
        from anoncli.methods.world_phone import model_config

        covariance = "full" if self.config.full_covariance else "diagonal"
        config = model_config(
            16000,
            covariance,
            self.config.clip_sigma,
            self.config.hidden,
            self.config.power,
            self.config.pool_size,
            self.pool_speakers,
            self.config.detail,
        )
        return {"config": config, "classes": list(self.classes), "attribute": self.attribute}

    def command(self) -> str:
        """The `anoncli train` command that trains this model: world_norm's, plus this trainer's own settings
        that differ from the preset."""
        base, values = PRESETS[self.default_preset].to_dict(), self.config.to_dict()
        own = [k for k in values if k not in WorldNormConfig.__dataclass_fields__ and values[k] != base[k]]
        return " ".join([super().command()] + [f"--param {shlex.quote(f'{k}={values[k]}')}" for k in own])

    def data_card(self) -> dict:
        return {
            **super().data_card(),
            "validation_speakers": list(self.val_speakers),
            "labels": "pocketsphinx allphone",
        }

    def card(self, result: FitResult) -> dict:
        shipped = "model.safetensors and card.json (anoncli/pretrained/world_phone form)"
        return {**super().card(result), "files": {"shipped_form": shipped}}

    def finish(self, result: FitResult) -> dict:
        """Write the shipped form (`model.safetensors`, `card.json`) of the best checkpoint into the run."""
        from anoncli import modelstore
        from anoncli.methods.world_phone import save_model

        state = modelstore.load_model(result.run.best_path)
        tensors = {f"{m}.{k}": v for m in state["inference_modules"] for k, v in state["models"][m].items()}
        card = {
            **self.shipped_card(),
            "validation": dict(result.best_metrics),
            "best_epoch": result.best_epoch,
        }
        weights = save_model(tensors, state["config"], list(state["classes"]), result.run.root, card, self.attribute)
        return {"model": str(weights)}
