"""AlexNet-like 2-D CNN over a log-mel: the discriminators/attackers of PCMelGAN, GenGAN and PSEGAN.

conv 5x5/64 -> pool -> 5x5/192 -> pool -> 3x3 384, 256, 256 -> pool -> adaptive
avg 6x6 -> FC 1024 -> FC 1024 -> K outputs, dropout between the FC layers.
`width` scales every channel count (the quick CPU configs use 0.25) and the
adaptive pooling lets any mel length through.

Example (2 classes, quarter width, a 80-band log-mel of 100 frames):
    >>> import torch
    >>> AlexNetDiscriminator(num_outputs=2, width=0.25).eval()(torch.randn(3, 1, 80, 100)).shape
    torch.Size([3, 2])
"""

from __future__ import annotations

import torch
from torch import nn


class AlexNetDiscriminator(nn.Module):
    """AlexNet-like classifier: (B, 1, n_mels, frames) or (B, n_mels, frames) log-mels -> (B, num_outputs) logits."""

    def __init__(self, num_outputs: int, width: float = 1.0, dropout: float = 0.5, first_stride: int = 1):
        super().__init__()
        c = [max(4, int(round(n * width))) for n in (64, 192, 384, 256, 256)]
        fc = max(16, int(round(1024 * width)))
        self.features = nn.Sequential(
            nn.Conv2d(1, c[0], 5, stride=first_stride, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(c[0], c[1], 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(c[1], c[2], 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c[2], c[3], 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c[3], c[4], 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
        )
        self.pool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(c[4] * 36, fc),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc, fc),
            nn.ReLU(inplace=True),
            nn.Linear(fc, num_outputs),
        )

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, 1, n_mels, frames) -> (B, num_outputs) logits."""
        if mel.dim() == 3:
            mel = mel.unsqueeze(1)
        return self.classifier(self.pool(self.features(mel)).flatten(1))
