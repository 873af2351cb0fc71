"""PCMelGAN trainer: a filter F that hides the attribute, then a generator G that draws a new one.

Per batch (F, then G, then FD, then GD), with s the true class, s' a uniformly
drawn target class and K the number of classes:
  L_F  = CE(FD(F(x)), other(s)) + lambda * relu(L1(F(x), x) - eps)^2
  L_G  = CE(GD(G(F(x), z, s')), s') + lambda * relu(L1(G, x) - eps)^2
  L_FD = CE(FD(F(x)), s)
  L_GD = 1/2 [CE(GD(x), s) + CE(GD(G), K)]          (K = the extra "fake" class)
other(s) = 1 - s for two classes (the paper); for K > 2 a different class
drawn uniformly. lambda = 100, eps = 1e-3.

Two trainers write pcmelgan models: the mel-domain one here (`--method pcmelgan`,
presets quick/full) and `PCMelGANSourceFilterTrainer` (`--method pcmelgan-sf`, presets
sf-quick/sf-full), which extends the source-filter trainer
(`source_filter_gan`) with the networks above on the WORLD envelope.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from anoncli.models.chunking import generate
from anoncli.models.discriminator import AlexNetDiscriminator
from anoncli.models.generators import PCMELGAN_NOISE_DIM, pcmelgan_filter, pcmelgan_generator, pcmelgan_z
from anoncli.training.gan_common import MelGANConfig, MelGANTrainer, MelItem, mel_presets
from anoncli.training.source_filter_gan import SourceFilterTrainer, sf_presets


def hinge_distortion(output: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    """max(0, L1(output, target) - eps)^2: no distortion penalty inside the `eps` budget."""
    return torch.relu(nn.functional.l1_loss(output.float(), target.float()) - eps) ** 2


def other_class(labels: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """A class different from each label (B,): the other one for two classes, else a uniformly drawn other class."""
    if num_classes == 2:
        return 1 - labels
    shift = torch.randint(1, num_classes, labels.shape, generator=generator).to(labels.device)
    return (labels + shift) % num_classes


@dataclass
class PCMelGANConfig(MelGANConfig):
    """PCMelGAN's settings: MelGANConfig plus the distortion hinge (lambda, and the free L1 margin eps)."""

    distortion_lambda: float = 100.0
    distortion_eps: float = 1e-3


class PCMelGANTrainer(MelGANTrainer):
    """`anoncli train --method pcmelgan`: filter F and generator G, each against its own discriminator (presets quick/full)."""

    method = "pcmelgan"
    default_attribute = "gender"
    other_domain = "pcmelgan-sf"
    config_class = PCMelGANConfig
    presets = mel_presets(
        PCMelGANConfig,
        quick={
            "lr_g": 1e-3,
            "lr_d": 3e-4,
            "val_fraction": 0.5,
            "distortion_lambda": 100.0,
            "distortion_eps": 1e-3,
            "epochs": 12,
        },
        full={
            "lr_g": 1e-4,
            "lr_d": 4e-4,
            "distortion_lambda": 100.0,
            "distortion_eps": 1e-3,
            "epochs": 100,
            "batch_size": 128,
        },
    )

    def build(self, num_classes: int) -> None:
        c = self.config
        self.num_classes = num_classes
        self.filter = pcmelgan_filter(self.model_config())
        self.generator = pcmelgan_generator(self.model_config(), num_classes)
        self.filter_d = AlexNetDiscriminator(num_classes, width=c.d_width, first_stride=c.d_first_stride)
        self.generator_d = AlexNetDiscriminator(num_classes + 1, width=c.d_width, first_stride=c.d_first_stride)
        betas = (0.5, 0.9)
        self.opts = {
            "filter": torch.optim.Adam(self.filter.parameters(), lr=c.lr_g, betas=betas),
            "generator": torch.optim.Adam(self.generator.parameters(), lr=c.lr_g, betas=betas),
            "filter_d": torch.optim.Adam(self.filter_d.parameters(), lr=c.lr_d, betas=betas),
            "generator_d": torch.optim.Adam(self.generator_d.parameters(), lr=c.lr_d, betas=betas),
        }

    def modules(self):
        return {
            "filter": self.filter,
            "generator": self.generator,
            "filter_d": self.filter_d,
            "generator_d": self.generator_d,
        }

    def optimizers(self):
        return self.opts

    def discriminators(self):
        # GD's extra "fake" output is simply never the target during the warm-up
        return [("filter_d", self.filter_d), ("generator_d", self.generator_d)]

    def inference_modules(self):
        return ["filter", "generator"]

    def gan_step(self, x, labels):
        c, k = self.config, self.num_classes
        batch = x.shape[0]
        z_f = torch.randn(batch, PCMELGAN_NOISE_DIM, device=x.device)
        z_g = torch.randn(batch, PCMELGAN_NOISE_DIM, device=x.device)
        targets = torch.randint(0, k, (batch,), generator=self.rng).to(x.device)
        # F: fool the filter discriminator into the other class, stay close to x
        filtered = self.filter(x, {"z": z_f})
        loss_f = nn.functional.cross_entropy(
            self.filter_d(filtered).float(), other_class(labels, k, self.rng)
        ) + c.distortion_lambda * hinge_distortion(filtered, x, c.distortion_eps)
        self.optimize("filter", loss_f)
        # G: from the filtered mel, sound like the drawn target class to GD
        filtered = filtered.detach()
        generated = self.generator(filtered, {"z": z_g, "label": targets})
        loss_g = nn.functional.cross_entropy(
            self.generator_d(generated).float(), targets
        ) + c.distortion_lambda * hinge_distortion(generated, x, c.distortion_eps)
        self.optimize("generator", loss_g)
        # FD: recover the true class from F's output
        loss_fd = nn.functional.cross_entropy(self.filter_d(filtered).float(), labels)
        self.optimize("filter_d", loss_fd)
        # GD: true class on real mels, the extra "fake" class on G's output
        fake_class = torch.full_like(labels, k)
        loss_gd = 0.5 * (
            nn.functional.cross_entropy(self.generator_d(x).float(), labels)
            + nn.functional.cross_entropy(self.generator_d(generated.detach()).float(), fake_class)
        )
        self.optimize("generator_d", loss_gd)
        return {"f": loss_f.item(), "g": loss_g.item(), "fd": loss_fd.item(), "gd": loss_gd.item()}

    @torch.no_grad()
    def anonymize_val(self, item: MelItem, index: int) -> torch.Tensor:
        seed = self.config.seed * 7919 + index
        target = torch.tensor([index % self.num_classes], device=self.device)
        mel = item.norm.unsqueeze(0).to(self.device)
        filtered = generate(self.filter, mel, {"z": pcmelgan_z(seed).to(self.device)})
        return generate(self.generator, filtered, {"z": pcmelgan_z(seed + 1).to(self.device), "label": target}).squeeze(
            0
        )


class PCMelGANSourceFilterTrainer(SourceFilterTrainer):
    """`anoncli train --method pcmelgan-sf`: a source-filter PCMelGAN model (presets sf-quick/sf-full): filter F
    (pushed towards a uniform attribute posterior by its own discriminator), then generator G towards the
    target class, on the envelope, plus the prosody head."""

    method = "pcmelgan"
    name = "pcmelgan-sf"
    default_attribute = "gender"
    other_domain = "pcmelgan"
    presets = sf_presets(hide_speaker_trait=True)
    filter_stage = True

    def envelope_networks(self, num_classes: int) -> dict[str, nn.Module]:
        config = self.model_config()
        return {"filter": pcmelgan_filter(config), "generator": pcmelgan_generator(config, num_classes)}

    def envelope_change(self, x, targets):
        z_f = torch.randn(x.shape[0], PCMELGAN_NOISE_DIM, generator=self.rng).to(x.device)
        z_g = torch.randn(x.shape[0], PCMELGAN_NOISE_DIM, generator=self.rng).to(x.device)
        filtered = self.networks["filter"](x, {"z": z_f})
        return self.networks["generator"](filtered, {"z": z_g, "label": targets}), filtered
