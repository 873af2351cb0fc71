"""`anoncli train --method melgan`: a MelGAN vocoder for the working-rate log-mel.

Generator and multi-scale discriminator as in melgan-neurips
(anoncli.synthesis.melgan); hinge loss, feature matching x10, Adam 1e-4
beta (0.5, 0.9). Training pairs are random `segment` -sample crops of the
training speakers' audio and their LogMel; validation is copy-synthesis of
held-out speakers' whole utterances, scored with STOI (the model selection
criterion, best.pt).

The `quick` preset adds an L1 loss between the mel of the output and the
input mel (weight `mel_weight`, as HiFi-GAN does): without it a few minutes
of CPU training give noise; the `full` preset is the paper's recipe (no mel
loss). The loop (`anoncli.training.loop.fit`) writes a checkpoint after
every epoch (`steps_per_epoch` steps, 0 = one pass over the training audio),
so a killed run resumes from the last finished epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from anoncli.errors import AnoncliError
from anoncli.synthesis.mel import LogMel
from anoncli.synthesis.melgan import Generator, MultiScaleDiscriminator
from anoncli.training.common import atomic_torch_save, load_waves, report_split, speaker_split
from anoncli.training.loop import FitResult, TrainConfig, Trainer, data_fingerprint

HOP = 256


@dataclass
class MelGANVocoderConfig(TrainConfig):
    """The vocoder's settings: sample rate, crop length (`segment` samples, a multiple of 256), Adam (lr,
    beta1, beta2), loss weights (feature matching, mel L1), generator (ngf, residual layers) and multi-scale
    discriminator sizes, and the held-out speakers (val_fraction, or val_speakers) and files validated."""

    sample_rate: int = 16000
    segment: int = 8192
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.9
    fm_weight: float = 10.0
    mel_weight: float = 45.0
    ngf: int = 32
    n_residual_layers: int = 3
    ndf: int = 16
    d_layers: int = 4
    d_downsampling: int = 4
    d_scales: int = 3
    d_max_channels: int = 256
    val_fraction: float = 0.2
    val_speakers: list[str] = field(default_factory=list)
    val_files: int = 8

    def check(self) -> None:
        """Raise AnoncliError unless `segment` is a multiple of 256 samples, at least 1024."""
        super().check()
        if self.segment < HOP * 4 or self.segment % HOP:
            raise AnoncliError(f"--param segment={self.segment}: expected a multiple of {HOP}, at least {HOP * 4}")


PRESETS = {
    # 400 steps, about half an hour on 2 busy CPU cores: the loss goes down and the
    # validation STOI up (0.65 after 350 steps on emodb-dev), not a usable vocoder.
    # The discriminator's widest layers are capped at 256 channels (the paper: 1024,
    # 16 M parameters and a 200 MB checkpoint with Adam's moments).
    "quick": MelGANVocoderConfig(
        batch_size=4, epochs=8, steps_per_epoch=50, mel_weight=45.0, d_max_channels=256, val_files=8, threads=1
    ),
    # The paper's recipe (melgan-neurips: batch 16, segment 8192, no mel loss), for a GPU:
    # 200 k steps, validated every 500.
    "full": MelGANVocoderConfig(
        batch_size=16, epochs=400, steps_per_epoch=500, mel_weight=0.0, d_max_channels=1024, val_files=24, threads=0
    ),
}


def random_segments(waves: list[torch.Tensor], count: int, length: int, gen: torch.Generator) -> torch.Tensor:
    """(count, length) crops from random utterances; short utterances are zero-padded."""
    batch = torch.zeros(count, length)
    for row in range(count):
        wave = waves[int(torch.randint(len(waves), (1,), generator=gen))]
        if len(wave) > length:
            start = int(torch.randint(len(wave) - length + 1, (1,), generator=gen))
            batch[row] = wave[start : start + length]
        else:
            batch[row, : len(wave)] = wave
    return batch


def soft_logmel(mel: LogMel, wave: torch.Tensor) -> torch.Tensor:
    """log10(mel + 1e-5): LogMel's clamp would give a near-silent output no gradient at all."""
    return torch.log10(mel.mel_scale(mel.magnitude_stft(wave)) + 1e-5)


def discriminator_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Hinge loss summed over scales on the final layer outputs."""
    return sum(F.relu(1 - r[-1]).mean() + F.relu(1 + f[-1]).mean() for r, f in zip(real, fake))


def generator_losses(
    real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(adversarial hinge loss, feature-matching L1 averaged over the scales' hidden layers)."""
    adversarial = sum(-f[-1].mean() for f in fake)
    matching = [
        F.l1_loss(f_layer, r_layer.detach()) for r, f in zip(real, fake) for r_layer, f_layer in zip(r[:-1], f[:-1])
    ]
    return adversarial, torch.stack(matching).mean()


def spread(items: list, limit: int) -> list:
    """At most `limit` items spread evenly over the list (all of them when `limit` is 0 or not reached)."""
    if not limit or len(items) <= limit:
        return items
    return [items[int(i * len(items) / limit)] for i in range(limit)]


class MelGANVocoderTrainer(Trainer):
    """`anoncli train --method melgan`: a MelGAN vocoder at the working rate; keeps the epoch with the best
    copy-synthesis STOI of held-out speakers. Raises AnoncliError for a corpus without audio or speakers."""

    method = "melgan"
    config_class = MelGANVocoderConfig
    presets = PRESETS
    selection = ("val_stoi", "max")

    def setup(self) -> None:
        c = self.config
        corpus = self.options.open_corpus()
        if not corpus.utterances:
            raise AnoncliError(f"{self.options.corpus}: no audio files")
        self.corpus = corpus
        self.train_utts, self.val_utts, self.val_speakers = speaker_split(
            corpus.utterances, c.val_speakers or None, c.val_fraction, c.seed
        )
        if c.progress:
            report_split(self.train_name(), self.train_utts, self.val_utts)
        self.data_fingerprint = data_fingerprint(corpus.utterances)
        self.train_waves = load_waves(self.train_utts, c.sample_rate, "reading training audio")
        self.val_waves = load_waves(spread(self.val_utts, c.val_files), c.sample_rate, "reading validation audio")
        self.mel = LogMel(sample_rate=c.sample_rate).to(self.device)
        self.generator = Generator(self.mel.n_mels, c.ngf, c.n_residual_layers)
        self.discriminator = MultiScaleDiscriminator(c.d_scales, c.ndf, c.d_layers, c.d_downsampling, c.d_max_channels)
        betas = (c.beta1, c.beta2)
        self.opts = {
            "generator": torch.optim.Adam(self.generator.parameters(), lr=c.lr, betas=betas),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=c.lr, betas=betas),
        }

    def modules(self):
        return {"generator": self.generator, "discriminator": self.discriminator}

    def optimizers(self):
        return self.opts

    def inference_modules(self):
        return ["generator"]

    def model_info(self) -> dict:
        # `generator` at the top level: what `synthesis.melgan.load_melgan` reads (the same tensors as models["generator"])
        return {
            "config": {"sample_rate": self.config.sample_rate, **self.generator.architecture()},
            "generator": self.generator.state_dict(),
        }

    def batches(self, epoch: int):
        c = self.config
        count = c.steps_per_epoch or max(1, len(self.train_waves) // c.batch_size)  # 0: one pass over the audio
        return (random_segments(self.train_waves, c.batch_size, c.segment, self.rng) for _ in range(count))

    def train_step(self, real: torch.Tensor) -> dict[str, float]:
        c = self.config
        real = real.to(self.device)
        fake = self.generator(self.mel(real))[..., : real.shape[-1]]
        real = real.unsqueeze(1)
        loss_d = discriminator_loss(self.discriminator(real), self.discriminator(fake.detach()))
        self.optimize("discriminator", loss_d)
        adversarial, matching = generator_losses(self.discriminator(real), self.discriminator(fake))
        loss_g = adversarial + c.fm_weight * matching
        loss_mel = F.l1_loss(soft_logmel(self.mel, fake.squeeze(1)), soft_logmel(self.mel, real.squeeze(1)))
        if c.mel_weight:
            loss_g = loss_g + c.mel_weight * loss_mel
        self.optimize("generator", loss_g)
        return {
            "loss_d": loss_d.item(),
            "loss_adv": adversarial.item(),
            "loss_fm": matching.item(),
            "loss_mel": loss_mel.item(),
        }

    def validate(self) -> dict[str, float]:
        """Copy-synthesis of whole held-out utterances: mean STOI and mel L1."""
        from pystoi import stoi

        if not self.val_waves:
            return {"val_stoi": float("nan")}
        scores, mel_errors = [], []
        for wave in self.val_waves:
            logmel = self.mel(wave[None].to(self.device))
            out = self.generator(logmel)[0, 0, : wave.shape[-1]]
            mel_errors.append(float(F.l1_loss(self.mel(out[None]), logmel)))
            scores.append(
                float(stoi(wave.numpy().astype(np.float64), out.cpu().numpy().astype(np.float64), self.mel.sample_rate))
            )
        return {"val_stoi": float(np.mean(scores)), "val_mel_l1": float(np.mean(mel_errors))}

    def card(self, result: FitResult) -> dict:
        return {
            "kind": "vocoder",
            "data": {
                "corpus": str(self.corpus.root.resolve()),
                "files": len(self.corpus.utterances),
                "train_files": len(self.train_utts),
                "val_files": len(self.val_utts),
                "train_speakers": sorted({u.speaker for u in self.train_utts}),
                "val_speakers": self.val_speakers,
            },
            "sample_rate": self.config.sample_rate,
            "mel": "anoncli.synthesis.mel.LogMel (n_fft 1024, hop 256, 80 Slaney mels, log10 magnitude)",
            "validation": {
                "criterion": "copy-synthesis STOI",
                "stoi": result.best_metrics.get("val_stoi"),
                **result.best_metrics,
            },
            "files": {
                "checkpoint": "checkpoints/best.pt",
                "generator": "generator.pt (plain state dict, melgan-neurips keys)",
            },
        }

    def finish(self, result: FitResult) -> dict:
        """Export the best generator as a plain melgan-neurips state dict (RUN/generator.pt)."""
        best = torch.load(result.run.best_path, map_location="cpu", weights_only=True)
        atomic_torch_save(best["models"]["generator"], result.run.root / "generator.pt")
        return {"val_stoi": result.best}
