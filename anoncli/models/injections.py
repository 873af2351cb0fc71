"""What each paper injects at the U-Net bottleneck (B, C, n_mels/stride, frames/stride), stride = 2**(levels - 1).

`cond` keys: "z" (B, noise_dim) PCMelGAN noise vector; "label" (B,) int target
class; "noise" (B, 1, h, w) GenGAN noise map. Noise that varies over time is
drawn per utterance at bottleneck resolution by the caller, so chunked
inference can slice it consistently.

Example (a bottleneck of 128 channels, 5 mel rows, 4 time steps):
    >>> import torch
    >>> h = torch.zeros(2, 128, 5, 4)
    >>> inject = PCMelGANInjection(128, 5, noise_dim=10, num_classes=2)
    >>> inject(h, {"z": torch.randn(2, 10), "label": torch.tensor([0, 1])}).shape  # 128 + 128 noise + 1 label
    torch.Size([2, 257, 5, 4])
    >>> NoiseChannel()(h, {"noise": torch.randn(2, 1, 5, 4)}).shape
    torch.Size([2, 129, 5, 4])
    >>> GatedDilatedBottleneck(128, 5, num_classes=8, width=32, hidden=16, stacks=1)(h, {"label": torch.tensor([3, 5])}).shape
    torch.Size([2, 128, 5, 4])
"""

from __future__ import annotations

import torch
from torch import nn

from anoncli.models.unet import Bottleneck


class PCMelGANInjection(Bottleneck):
    """z in R^10 -> Linear -> a (C, h) map repeated over time; optional label -> one extra channel."""

    def __init__(
        self, channels: int = 128, height: int = 5, noise_dim: int = 10, num_classes: int = 0, embed_dim: int = 16
    ):
        super().__init__()
        self.channels, self.height, self.noise_dim, self.num_classes = channels, height, noise_dim, num_classes
        self.noise_proj = nn.Linear(noise_dim, channels * height)
        if num_classes:
            self.embedding = nn.Embedding(num_classes, embed_dim)
            self.label_proj = nn.Linear(embed_dim, height)

    def out_channels(self, channels: int) -> int:
        return channels + self.channels + (1 if self.num_classes else 0)

    def forward(self, features: torch.Tensor, cond: dict) -> torch.Tensor:
        batch, _, height, width = features.shape
        z = cond.get("z")
        if z is None:
            z = torch.zeros(batch, self.noise_dim, device=features.device)
        noise_map = self.noise_proj(z.to(features)).view(batch, self.channels, height, 1).expand(-1, -1, -1, width)
        parts = [features, noise_map]
        if self.num_classes:
            label_map = self.label_proj(self.embedding(cond["label"].long())).view(batch, 1, height, 1)
            parts.append(label_map.to(features).expand(-1, -1, -1, width))
        return torch.cat(parts, dim=1)


class NoiseChannel(Bottleneck):
    """GenGAN: one N(0, 1) channel of bottleneck size."""

    def out_channels(self, channels: int) -> int:
        return channels + 1

    def forward(self, features: torch.Tensor, cond: dict) -> torch.Tensor:
        noise = cond.get("noise")
        if noise is None:
            noise = torch.randn(features.shape[0], 1, *features.shape[2:], device=features.device)
        return torch.cat([features, noise.to(features)], dim=1)


class GatedResidualBlock(nn.Module):
    """1x1 reduce -> two dilated time convolutions, one gated by a sigmoid -> 1x1 expand; residual + skip."""

    def __init__(self, channels: int, hidden: int, dilation: int, kernel_size: int = 3):
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.reduce = nn.Conv1d(channels, hidden, 1)
        self.filter = nn.Conv1d(hidden, hidden, kernel_size, dilation=dilation, padding=padding)
        self.gate = nn.Conv1d(hidden, hidden, kernel_size, dilation=dilation, padding=padding)
        self.expand = nn.Conv1d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.reduce(x)
        h = torch.tanh(self.filter(h)) * torch.sigmoid(self.gate(h))
        out = self.expand(h)
        return x + out, out


class GatedDilatedBottleneck(Bottleneck):
    """PSEGAN: the bottleneck map is flattened over mel bands and run through dilated gated blocks over time.

    Dilations 1, 2, 4, ..., 32 per stack give long-range time context; the
    target class (e.g. the emotion the output should sound like) is an
    embedding added to every time step.
    """

    def __init__(
        self,
        channels: int = 128,
        height: int = 5,
        num_classes: int = 0,
        width: int = 128,
        hidden: int = 64,
        dilations=(1, 2, 4, 8, 16, 32),
        stacks: int = 1,
        embed_dim: int = 16,
    ):
        super().__init__()
        self.channels, self.height, self.num_classes = channels, height, num_classes
        flat = channels * height
        self.input = nn.Conv1d(flat + (embed_dim if num_classes else 0), width, 1)
        if num_classes:
            self.embedding = nn.Embedding(num_classes, embed_dim)
        self.blocks = nn.ModuleList(GatedResidualBlock(width, hidden, d) for _ in range(stacks) for d in dilations)
        self.output = nn.Sequential(nn.ReLU(), nn.Conv1d(width, flat, 1))

    def forward(self, features: torch.Tensor, cond: dict) -> torch.Tensor:
        batch, channels, height, width = features.shape
        x = features.reshape(batch, channels * height, width)
        if self.num_classes:
            emb = self.embedding(cond["label"].long()).to(x)[:, :, None].expand(-1, -1, width)
            x = torch.cat([x, emb], dim=1)
        h = self.input(x)
        skip_sum = torch.zeros_like(h)
        for block in self.blocks:
            h, skip = block(h)
            skip_sum = skip_sum + skip
        out = self.output(skip_sum).reshape(batch, channels, height, width)
        return features + out
