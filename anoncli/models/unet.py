"""The U-Net generator shared by PCMelGAN (filter F and generator G), GenGAN and PSEGAN.

Input and output are per-utterance normalised log-mels (B, 1, n_mels, frames)
in [-1, 1]. Encoder: (weight-normed 3x3 conv -> BN -> ReLU) x 2 per level,
channels [8, 16, 32, 64, 128] by default (any number of levels; one max-pool
between levels); decoder: nearest x2 upsampling,
concatenated skip, the same block; 1x1 conv -> tanh. Each paper injects its
noise/label at the bottleneck through a `Bottleneck` module (see
`anoncli.models.injections`). Frames must be a multiple of `stride` (2**(levels - 1), 16 by default): the
callers pad and crop back (`anoncli.models.chunking`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two weight-normalised 3x3 Conv2d + BatchNorm + ReLU: (B, in, H, W) -> (B, out, H, W)."""
    return nn.Sequential(
        weight_norm(nn.Conv2d(in_channels, out_channels, 3, padding=1)),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        weight_norm(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class Bottleneck(nn.Module):
    """Identity injection: what a U-Net without noise or labels does (PCMelGAN's F without noise)."""

    def out_channels(self, channels: int) -> int:
        """Channels after the injection, given `channels` coming in."""
        return channels

    def forward(self, features: torch.Tensor, cond: dict) -> torch.Tensor:
        """Bottleneck map (B, C, h, w) and conditioning `cond` -> (B, out_channels(C), h, w)."""
        return features


class UNet(nn.Module):
    """U-Net over normalised log-mels: (B, 1, n_mels, frames) in [-1, 1] -> the same shape, through tanh.

    channels: encoder widths, one per level (stride 2**(levels-1) in both axes);
    bottleneck: the paper's injection of noise or a target label (identity by
    default); residual: start at the identity map (the head is zero-initialised).
    Raises ValueError when n_mels or frames are not multiples of `stride`.
    Source: Ronneberger et al. 2015, as used by PCMelGAN, GenGAN and PSEGAN.

    Example:
        >>> import torch
        >>> net = UNet((8, 16, 32), residual=True).eval()
        >>> mel = torch.rand(2, 1, 80, 64) * 2 - 1
        >>> net(mel).shape
        torch.Size([2, 1, 80, 64])
        >>> bool(torch.allclose(net(mel), mel.clamp(-0.999, 0.999), atol=1e-5))  # residual starts as identity
        True
    """

    def __init__(
        self,
        channels: Sequence[int] = (8, 16, 32, 64, 128),
        bottleneck: Bottleneck | None = None,
        residual: bool = False,
    ):
        super().__init__()
        channels = list(channels)
        self.stride = 2 ** (len(channels) - 1)
        self.residual = residual
        self.encoders = nn.ModuleList()
        previous = 1
        for width in channels:
            self.encoders.append(conv_block(previous, width))
            previous = width
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = bottleneck or Bottleneck()
        previous = self.bottleneck.out_channels(channels[-1])
        self.decoders = nn.ModuleList()
        for width in reversed(channels[:-1]):
            self.decoders.append(conv_block(previous + width, width))
            previous = width
        self.head = nn.Conv2d(previous, 1, 1)
        if residual:
            # Start at the identity map: the generator then only has to learn the change.
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, mel: torch.Tensor, cond: dict | None = None) -> torch.Tensor:
        """(B, 1, n_mels, frames) -> same shape; n_mels and frames multiples of `stride`."""
        if mel.shape[-1] % self.stride or mel.shape[-2] % self.stride:
            raise ValueError(f"U-Net input {tuple(mel.shape)}: mel bands and frames must be multiples of {self.stride}")
        skips = []
        h = mel
        for index, encoder in enumerate(self.encoders):
            if index:
                h = self.pool(h)
            h = encoder(h)
            skips.append(h)
        h = self.bottleneck(h, cond or {})
        for decoder, skip in zip(self.decoders, reversed(skips[:-1])):
            h = nn.functional.interpolate(h, scale_factor=2.0, mode="nearest")
            h = decoder(torch.cat([h, skip], dim=1))
        out = self.head(h)
        if self.residual:
            return torch.tanh(out + torch.atanh(mel.clamp(-0.999, 0.999)))
        return torch.tanh(out)
