"""PSEGAN trainer: hide the emotion (attribute), keep the speaker.

Generator: U-Net whose bottleneck is a gated, dilated residual stack over
time, conditioned on a target class t drawn uniformly per example.
Discriminator: an emotion classifier with K + 1 outputs (K classes + "fake").
  L_G = CE(D(G(x, t)), t) + lambda_dist * L1(G, x) + lambda_spk * (1 - cos(E(x), E(G)))
  L_D = 1/2 [CE(D(x), s) + CE(D(G), fake)]
E is a frozen speaker matcher (resemblyzer's VoiceEncoder, differentiable
from the mel; `anoncli.models.speaker`). Adam lr G 1e-4, D 2e-4, betas (0.5, 0.9).

Two trainers write psegan models: the mel-domain one here (`--method psegan`,
presets quick/full) and `PSEGANSourceFilterTrainer` (`--method psegan-sf`, presets
sf-quick/sf-full), which extends the source-filter trainer
(`source_filter_gan`) with the networks above on the WORLD envelope.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from anoncli.models.chunking import generate
from anoncli.models.discriminator import AlexNetDiscriminator
from anoncli.models.generators import psegan_generator
from anoncli.models.speaker import MelSpeakerEncoder, speaker_consistency_loss
from anoncli.synthesis.mel import LogMel, denormalize
from anoncli.training.gan_common import MelGANConfig, MelGANTrainer, MelItem, mel_presets
from anoncli.training.source_filter_gan import SourceFilterTrainer, sf_presets


def build_speaker_matcher(sample_rate: int) -> MelSpeakerEncoder:
    """The frozen 16 kHz GE2E speaker encoder fed from log-mels at `sample_rate`; raises AnoncliError without resemblyzer."""
    mel = LogMel(sample_rate=sample_rate)
    return MelSpeakerEncoder(mel.filterbank, mel.sample_rate, mel.n_fft, mel.hop_length)


@dataclass
class PSEGANConfig(MelGANConfig):
    """PSEGAN's settings: MelGANConfig plus the gated bottleneck's size and the loss weights (L1 distortion,
    speaker similarity) and the weight of the speaker similarity in the selection score."""

    gated_width: int = 96
    gated_hidden: int = 48
    gated_stacks: int = 1
    dist_weight: float = 2.0
    speaker_weight: float = 5.0
    speaker_val_weight: float = 1.0


class PSEGANTrainer(MelGANTrainer):
    """`anoncli train --method psegan`: hide the emotion, keep the speaker (a speaker-similarity loss and validation figure)."""

    method = "psegan"
    default_attribute = "emotion"
    other_domain = "psegan-sf"
    config_class = PSEGANConfig
    model_keys = ("sample_rate", "channels", "residual", "gated_width", "gated_hidden", "gated_stacks")
    presets = mel_presets(
        PSEGANConfig,
        quick={
            "lr_g": 1e-3,
            "lr_d": 3e-4,
            "dist_weight": 2.0,
            "speaker_weight": 5.0,
            "gated_width": 96,
            "gated_hidden": 48,
            "gated_stacks": 1,
            "segment_frames": 64,
            "epochs": 12,
            "speaker_val_weight": 1.0,
        },
        full={
            "lr_g": 1e-4,
            "lr_d": 2e-4,
            "dist_weight": 10.0,
            "speaker_weight": 5.0,
            "gated_width": 256,
            "gated_hidden": 128,
            "gated_stacks": 2,
            "segment_frames": 192,
            "epochs": 100,
            "speaker_val_weight": 1.0,
        },
    )

    def build(self, num_classes: int) -> None:
        c = self.config
        self.num_classes = num_classes
        self.generator = psegan_generator(self.model_config(), num_classes)
        self.discriminator = AlexNetDiscriminator(num_classes + 1, width=c.d_width, first_stride=c.d_first_stride)
        self.matcher = build_speaker_matcher(c.sample_rate).to(self.device)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=c.lr_g, betas=(0.5, 0.9))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=c.lr_d, betas=(0.5, 0.9))

    def gan_step(self, x, labels):
        c, k = self.config, self.num_classes
        targets = torch.randint(0, k, (x.shape[0],), generator=self.rng).to(x.device)
        fake = self.generator(x, {"label": targets})
        adv = nn.functional.cross_entropy(self.discriminator(fake).float(), targets)
        distortion = nn.functional.l1_loss(fake.float(), x.float())
        # the matcher needs real log-mels: undo each crop's utterance normalisation on both sides
        mu, sigma = self.batch_stats[:, 0, None, None], self.batch_stats[:, 1, None, None]
        speaker = speaker_consistency_loss(
            self.matcher, denormalize(x.squeeze(1).float(), mu, sigma), denormalize(fake.squeeze(1).float(), mu, sigma)
        )
        self.optimize("generator", adv + c.dist_weight * distortion + c.speaker_weight * speaker)
        fake_class = torch.full_like(labels, k)
        loss_d = 0.5 * (
            nn.functional.cross_entropy(self.discriminator(x).float(), labels)
            + nn.functional.cross_entropy(self.discriminator(fake.detach()).float(), fake_class)
        )
        self.optimize("discriminator", loss_d)
        return {"g_adv": adv.item(), "g_l1": distortion.item(), "g_spk": speaker.item(), "d": loss_d.item()}

    @torch.no_grad()
    def anonymize_val(self, item: MelItem, index: int) -> torch.Tensor:
        target = torch.tensor([index % self.num_classes], device=self.device)
        return generate(self.generator, item.norm.unsqueeze(0).to(self.device), {"label": target}).squeeze(0)

    @torch.no_grad()
    def extra_validation(self, originals: list[MelItem], outputs: list[torch.Tensor]) -> dict[str, float]:
        sims = []
        for item, out in zip(originals, outputs):
            mu = torch.tensor(item.mu)
            sigma = torch.tensor(item.sigma)
            a = denormalize(item.norm, mu, sigma).unsqueeze(0).to(self.device)
            b = denormalize(out.cpu(), mu, sigma).unsqueeze(0).to(self.device)
            sims.append(float((self.matcher(a) * self.matcher(b)).sum()))
        return {"val_speaker_cos": sum(sims) / max(1, len(sims))}

    def score(self, metrics):
        return super().score(metrics) - self.config.speaker_val_weight * 100.0 * (1.0 - metrics["val_speaker_cos"])


class PSEGANSourceFilterTrainer(SourceFilterTrainer):
    """`anoncli train --method psegan-sf`: a source-filter PSEGAN model (presets sf-quick/sf-full): the gated
    U-Net towards the target emotion on the envelope, plus the prosody head, keeping the speaker."""

    method = "psegan"
    name = "psegan-sf"
    default_attribute = "emotion"
    other_domain = "psegan"
    presets = sf_presets(hide_speaker_trait=False)

    def envelope_networks(self, num_classes: int) -> dict[str, nn.Module]:
        return {"generator": psegan_generator(self.model_config(), num_classes)}

    def envelope_change(self, x, targets):
        return self.networks["generator"](x, {"label": targets}), None
