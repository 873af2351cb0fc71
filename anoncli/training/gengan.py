"""GenGAN trainer: a U-Net generator with a noise channel against a gender (attribute) discriminator.

L_G = MSE(M, M') + eps * L_adv,  L_adv = CE(D(M'), y_N)
L_D = CE(D(M), y) + CE(D(M'), y_N)
y_N is the *synthetic* label: a probability vector whose mass on each class
is drawn around uniform (for two classes p ~ N(0.5, sigma^2 = 0.05), clipped
to [0, 1]). It is used as a proper soft target (cross-entropy against a
probability distribution); the original code fed the float to a class-index
cross-entropy. With `d_fake_target = "true"` the discriminator is instead
trained to recover the real class from M' (a stronger, attacker-like D).

Two trainers write gengan models: the mel-domain one here (`--method gengan`,
presets quick/full) and `GenGANSourceFilterTrainer` (`--method gengan-sf`, presets
sf-quick/sf-full), which extends the source-filter trainer
(`source_filter_gan`) with the networks above on the WORLD envelope.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from anoncli.errors import AnoncliError
from anoncli.models.chunking import generate
from anoncli.models.discriminator import AlexNetDiscriminator
from anoncli.models.generators import gengan_generator, gengan_noise_map
from anoncli.training.gan_common import MelGANConfig, MelGANTrainer, MelItem, mel_presets
from anoncli.training.source_filter_gan import SourceFilterTrainer, sf_presets

SYNTHETIC_VARIANCE = 0.05


def synthetic_soft_target(
    batch: int,
    num_classes: int,
    generator: torch.Generator | None = None,
    variance: float = SYNTHETIC_VARIANCE,
    device=None,
) -> torch.Tensor:
    """(batch, K) rows of probabilities near uniform: K = 2 gives [1 - p, p] with p ~ N(0.5, variance) in [0, 1]."""
    std = variance**0.5
    if num_classes == 2:
        p = (0.5 + std * torch.randn(batch, generator=generator)).clamp(0.0, 1.0)
        target = torch.stack([1.0 - p, p], dim=1)
    else:
        raw = (1.0 / num_classes + std * torch.randn(batch, num_classes, generator=generator) / num_classes).clamp(
            min=0.0
        )
        raw = raw + 1e-6
        target = raw / raw.sum(dim=1, keepdim=True)
    return target.to(device) if device is not None else target


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a probability target (rows sum to 1)."""
    return -(target * torch.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


@dataclass
class GenGANConfig(MelGANConfig):
    """GenGAN's settings: MelGANConfig plus the adversarial weight and the discriminator's target on
    generated mels (d_fake_target: "synthetic", the paper's soft label, or "true", the real class)."""

    adv_weight: float = 1.0
    d_fake_target: str = "synthetic"

    def check(self) -> None:
        super().check()
        if self.d_fake_target not in ("synthetic", "true"):
            raise AnoncliError(f"--param d_fake_target={self.d_fake_target}: expected synthetic or true")


class GenGANTrainer(MelGANTrainer):
    """`anoncli train --method gengan`: the GenGAN U-Net with a noise channel against an attribute discriminator (presets quick/full)."""

    method = "gengan"
    default_attribute = "gender"
    other_domain = "gengan-sf"
    config_class = GenGANConfig
    presets = mel_presets(
        GenGANConfig,
        quick={
            "lr_g": 1e-3,
            "lr_d": 3e-4,
            "adv_weight": 1.0,
            "d_fake_target": "true",
            "epochs": 20,
            "val_fraction": 0.5,
        },
        full={"lr_g": 1e-3, "lr_d": 1e-3, "adv_weight": 1.0, "d_fake_target": "synthetic", "epochs": 100},
    )

    def build(self, num_classes: int) -> None:
        c = self.config
        self.num_classes = num_classes
        self.generator = gengan_generator(self.model_config())
        self.discriminator = AlexNetDiscriminator(num_classes, width=c.d_width, first_stride=c.d_first_stride)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=c.lr_g, betas=(0.5, 0.9))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=c.lr_d, betas=(0.5, 0.9))

    def gan_step(self, x, labels):
        batch = x.shape[0]
        stride = self.generator.stride
        noise = torch.randn(batch, 1, x.shape[2] // stride, x.shape[3] // stride, device=x.device)
        fake = self.generator(x, {"noise": noise})
        # generator: keep the mel, make D's attribute posterior look like the synthetic label
        soft = synthetic_soft_target(batch, self.num_classes, self.rng, device=x.device)
        adv = soft_cross_entropy(self.discriminator(fake), soft)
        distortion = nn.functional.mse_loss(fake.float(), x.float())
        self.optimize("generator", distortion + self.config.adv_weight * adv)
        # discriminator: real class on real mels; synthetic (or true) label on generated ones
        real_loss = nn.functional.cross_entropy(self.discriminator(x).float(), labels)
        fake_logits = self.discriminator(fake.detach())
        if self.config.d_fake_target == "true":
            fake_loss = nn.functional.cross_entropy(fake_logits.float(), labels)
        else:
            fake_loss = soft_cross_entropy(
                fake_logits, synthetic_soft_target(batch, self.num_classes, self.rng, device=x.device)
            )
        self.optimize("discriminator", real_loss + fake_loss)
        return {"g_mse": distortion.item(), "g_adv": adv.item(), "d_real": real_loss.item(), "d_fake": fake_loss.item()}

    @torch.no_grad()
    def anonymize_val(self, item: MelItem, index: int) -> torch.Tensor:
        noise = gengan_noise_map(self.config.seed * 7919 + index, item.norm.shape[-1], self.generator.stride).to(
            self.device
        )
        return generate(self.generator, item.norm.unsqueeze(0).to(self.device), {"noise": noise}).squeeze(0)


class GenGANSourceFilterTrainer(SourceFilterTrainer):
    """`anoncli train --method gengan-sf`: a source-filter GenGAN model (presets sf-quick/sf-full): the GenGAN
    U-Net with a noise channel on the envelope, MSE distortion, plus the prosody head."""

    method = "gengan"
    name = "gengan-sf"
    default_attribute = "gender"
    other_domain = "gengan"
    presets = sf_presets(hide_speaker_trait=True)

    def envelope_networks(self, num_classes: int) -> dict[str, nn.Module]:
        return {"generator": gengan_generator(self.model_config())}

    def envelope_change(self, x, targets):
        stride = self.networks["generator"].stride
        noise = torch.randn(x.shape[0], 1, x.shape[2] // stride, x.shape[3] // stride, generator=self.rng).to(x.device)
        return self.networks["generator"](x, {"noise": noise}), None

    def distortion(self, out, x):
        return nn.functional.mse_loss(out, x)
