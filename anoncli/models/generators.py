"""The generators of the mel-domain GAN methods, built from a checkpoint's model config.

Training (`anoncli.training.<method>`) and inference (`anoncli.methods.<method>`)
build the same networks from the same config keys, so both import them from
here. Each generator is a `UNet` over (B, 1, n_mels, F) normalised log-mels
whose bottleneck takes the method's conditioning; the per-utterance noise
drawn from a seed is here too, so a manifest's recorded seed reproduces it.

Config keys: `channels` (list of encoder widths), `residual` (bool); PSEGAN
adds `gated_width`, `gated_hidden` and `gated_stacks`.

Any number of levels works whose stride 2**(levels - 1) divides the 80 mel
bands (1 to 5 levels); the bottleneck's height follows (`bottleneck_height`).

Example (80 log-mel bands, 48 frames; frames must be a multiple of the stride, 16 here):
    >>> import torch
    >>> config = {"channels": [8, 16, 32, 64, 128], "residual": True}
    >>> mel = torch.rand(1, 1, 80, 48) * 2 - 1
    >>> gengan_generator(config).eval()(mel, {"noise": gengan_noise_map(seed=1, frames=48)}).shape
    torch.Size([1, 1, 80, 48])
    >>> g = pcmelgan_generator(config, num_classes=2).eval()
    >>> g(mel, {"z": pcmelgan_z(seed=1), "label": torch.tensor([1])}).shape
    torch.Size([1, 1, 80, 48])
    >>> psegan = {**config, "gated_width": 32, "gated_hidden": 16, "gated_stacks": 1}
    >>> psegan_generator(psegan, num_classes=8).eval()(mel, {"label": torch.tensor([3])}).shape
    torch.Size([1, 1, 80, 48])
"""

from __future__ import annotations

import torch

from anoncli.models.injections import GatedDilatedBottleneck, NoiseChannel, PCMelGANInjection
from anoncli.models.unet import UNet

PCMELGAN_NOISE_DIM = 10
N_MELS = 80  # mel bands of the log-mels (and of the source-filter envelope) the U-Nets take


def bottleneck_height(channels, n_mels: int = N_MELS) -> int:
    """Mel rows left at the U-Net bottleneck: n_mels / 2**(levels - 1), one level per entry of `channels`
    (5 levels: 80 / 16 = 5). Raises ValueError when n_mels does not divide by the stride."""
    stride = 2 ** (len(channels) - 1)
    if not channels or n_mels % stride:
        raise ValueError(f"a U-Net of {len(channels)} levels needs a multiple of {stride} mel bands, not {n_mels}")
    return n_mels // stride


def gengan_generator(config: dict) -> UNet:
    """GenGAN: a U-Net whose bottleneck gets one extra N(0, 1) noise channel (conditioning {"noise"})."""
    return UNet(config["channels"], NoiseChannel(), residual=config["residual"])


def gengan_noise_map(seed: int, frames: int, stride: int = 16, height: int | None = None) -> torch.Tensor:
    """The per-utterance N(0, 1) bottleneck channel (1, 1, height, ceil(frames/stride)), drawn from `seed`;
    `stride` is the generator's (`UNet.stride`), `height` defaults to N_MELS / stride."""
    height = N_MELS // stride if height is None else height
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return torch.randn(1, 1, height, -(-frames // stride), generator=generator)


def pcmelgan_filter(config: dict) -> UNet:
    """PCMelGAN's filter F: a U-Net with a noise vector z (conditioning {"z": (B, PCMELGAN_NOISE_DIM)})."""
    injection = PCMelGANInjection(config["channels"][-1], bottleneck_height(config["channels"]), PCMELGAN_NOISE_DIM, 0)
    return UNet(config["channels"], injection, residual=config["residual"])


def pcmelgan_generator(config: dict, num_classes: int) -> UNet:
    """PCMelGAN's generator G: z plus a target class (conditioning {"z", "label": (B,) class indices})."""
    injection = PCMelGANInjection(
        config["channels"][-1], bottleneck_height(config["channels"]), PCMELGAN_NOISE_DIM, num_classes
    )
    return UNet(config["channels"], injection, residual=config["residual"])


def pcmelgan_z(seed: int) -> torch.Tensor:
    """The per-utterance noise vector (1, PCMELGAN_NOISE_DIM) ~ N(0, 1), drawn from `seed`."""
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return torch.randn(1, PCMELGAN_NOISE_DIM, generator=generator)


def psegan_generator(config: dict, num_classes: int) -> UNet:
    """PSEGAN: a U-Net with a gated, dilated residual bottleneck over time, conditioned on a target class."""
    channels = config["channels"]
    bottleneck = GatedDilatedBottleneck(
        channels[-1],
        bottleneck_height(channels),
        num_classes,
        width=config["gated_width"],
        hidden=config["gated_hidden"],
        stacks=config["gated_stacks"],
    )
    return UNet(channels, bottleneck, residual=config["residual"])
