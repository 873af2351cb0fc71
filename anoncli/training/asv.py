"""A small ECAPA-TDNN speaker encoder trained on CPU: `anoncli train --method asv`.

speechbrain's `ECAPA_TDNN` lobe on `Fbank` features (sentence-level mean
normalisation), trained as a speaker classifier with additive angular margin
softmax (AAM, margin 0.2, scale 30) on random 2-s crops. The classifier is
thrown away; the 192-d embedding is what `evaluate --asv-model RUN` uses.
Trained on an anonymized output it is VoicePrivacy's *semi-informed* attacker.

The run folder is the loop's (`anoncli.training.loop.fit`: checkpoints,
log.parquet, resume); model.json, the card, also holds what the embedding
backend reads (`kind` and the encoder's sizes), and model.pt, the encoder's
state dict, is written once the run has done all its epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from anoncli.errors import InputError
from anoncli.scoring.embeddings import ECAPA_MODEL_KIND as MODEL_KIND
from anoncli.scoring.embeddings import SpeakerEncoder
from anoncli.scoring.features import load_16k
from anoncli.training.common import atomic_torch_save
from anoncli.training.loop import FitResult, TrainConfig, Trainer, data_fingerprint

RATE = 16000
# the settings that describe the encoder (what `scoring.embeddings.SpeakerEncoder` builds from)
MODEL_KEYS = ("n_mels", "channels", "lin_neurons")


@dataclass
class AsvConfig(TrainConfig):
    """The encoder's settings: `n_mels` filterbank channels, ECAPA `channels` (5 layers) and an embedding of
    `lin_neurons`; training on random `crop_s`-second crops with AAM softmax (`margin`, `scale`) and Adam
    (`lr`, `weight_decay`)."""

    crop_s: float = 1.5
    lr: float = 2e-3
    weight_decay: float = 2e-5
    n_mels: int = 40
    channels: list[int] = field(default_factory=lambda: [128, 128, 128, 128, 384])
    lin_neurons: int = 128
    margin: float = 0.2
    scale: float = 30.0


PRESETS = {
    "quick": AsvConfig(epochs=10, batch_size=32, amp=False),
    "full": AsvConfig(
        epochs=60,
        batch_size=32,
        crop_s=2.0,
        lr=1e-3,
        n_mels=80,
        channels=[512, 512, 512, 512, 1536],
        lin_neurons=192,
        amp=False,
    ),
}


def crop_batch(waves: list[np.ndarray], indices, crop: int, gen: torch.Generator) -> torch.Tensor:
    """(len(indices), crop) float32 random crops of `waves[i]` (start drawn from `gen`); a short wave is
    repeated to fill its crop."""
    batch = np.zeros((len(indices), crop), dtype=np.float32)
    for row, i in enumerate(indices):
        wave = waves[int(i)]
        if len(wave) > crop:
            start = int(torch.randint(0, len(wave) - crop, (1,), generator=gen))
            batch[row] = wave[start : start + crop]
        else:  # short utterance: repeat it to fill the crop
            batch[row] = np.resize(wave, crop)
    return torch.from_numpy(batch)


class AsvTrainer(Trainer):
    """`anoncli train --method asv`: a small ECAPA-TDNN speaker encoder (AAM softmax) on random crops; the run
    is usable as `evaluate --asv-model RUN`. Raises InputError for a corpus with fewer than 2 speakers."""

    method = "asv"
    config_class = AsvConfig
    presets = PRESETS
    selection = ("val_score", "max")  # no validation: every epoch is the newest best

    def setup(self) -> None:
        from speechbrain.lobes.models.ECAPA_TDNN import Classifier
        from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper

        from anoncli.progress import progress_bar

        c = self.config
        self.corpus = self.options.open_corpus()
        keep = [u for u in self.corpus.utterances if u.speaker is not None]
        self.speakers = sorted({u.speaker for u in keep})
        if len(self.speakers) < 2:
            raise InputError(f"{self.options.corpus}: --method asv needs a speaker label with at least 2 speakers")
        self.data_fingerprint = data_fingerprint(keep)
        self.waves = [load_16k(u.path)[0] for u in progress_bar(keep, desc="loading", leave=False)]
        self.labels = torch.tensor([self.speakers.index(u.speaker) for u in keep])
        self.encoder = SpeakerEncoder(c.to_dict(), str(self.device))
        self.classifier = Classifier(c.lin_neurons, out_neurons=len(self.speakers))
        self.loss_fn = LogSoftmaxWrapper(AdditiveAngularMargin(margin=c.margin, scale=c.scale))
        params = list(self.encoder.model.parameters()) + list(self.classifier.parameters())
        self.opts = {"model": torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)}

    def modules(self):
        return {"encoder": self.encoder.model, "classifier": self.classifier}

    def optimizers(self):
        return self.opts

    def inference_modules(self):
        return ["encoder"]

    def model_info(self) -> dict:
        return {
            "config": {"sample_rate": RATE, **{key: getattr(self.config, key) for key in MODEL_KEYS}},
            "speakers": self.speakers,
        }

    def batches(self, epoch: int):
        size = self.config.batch_size
        order = torch.randperm(len(self.waves), generator=self.rng)
        # batch norm cannot train on one item: a lone leftover waits for the next epoch
        return [order[s : s + size] for s in range(0, len(order), size) if len(order[s : s + size]) >= 2]

    def train_step(self, indices: torch.Tensor) -> dict[str, float]:
        x = crop_batch(self.waves, indices, int(self.config.crop_s * RATE), self.rng)
        y = self.labels[indices].to(self.device)
        outputs = self.classifier(self.encoder(x).unsqueeze(1))
        loss = self.loss_fn(outputs, y.unsqueeze(1))
        self.optimize("model", loss)
        return {"loss": loss.item(), "train_acc": float((outputs.squeeze(1).argmax(1) == y).float().mean())}

    def card(self, result: FitResult) -> dict:
        # `kind` and the encoder's sizes at the top: what `scoring.embeddings.EcapaBackend` reads
        return {
            "kind": MODEL_KIND,
            **{key: getattr(self.config, key) for key in MODEL_KEYS},
            "sample_rate": RATE,
            "speakers": self.speakers,
            "corpus": str(self.corpus.root.resolve()),
            "n_utterances": len(self.waves),
        }

    def finish(self, result: FitResult) -> dict:
        """Export the encoder's weights as RUN/model.pt once every epoch is done (a run stopped by its time
        budget is not yet an encoder to evaluate with)."""
        exported = result.run.root / "model.pt"
        if result.stopped == "max_minutes":
            exported.unlink(missing_ok=True)  # an earlier run's, left by --overwrite
        else:
            best = torch.load(result.run.best_path, map_location="cpu", weights_only=True)
            atomic_torch_save(best["models"]["encoder"], exported)
        return {"speakers": len(self.speakers), "utterances": len(self.waves)}
