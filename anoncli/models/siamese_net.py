"""Siamese feature extractor of Nelus & Martin: MFCC → VGG-like groups → a fixed-size feature vector.

The features are meant to carry the utility class (gender) and as little as
possible of the speaker's identity; the contrastive loss pulls same-gender
pairs together and pushes different-gender pairs at least `margin` apart.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PAPER_CHANNELS = (64, 128, 256, 512, 512)


class MfccFrontEnd(nn.Module):
    """64 mel bands, 32 cepstra, 26 ms Hamming-free (Hann) window, 13 ms step, as in the paper."""

    def __init__(
        self, sample_rate: int = 16000, n_mfcc: int = 32, n_mels: int = 64, win_ms: float = 26.0, hop_ms: float = 13.0
    ):
        super().__init__()
        import torchaudio

        win = int(round(sample_rate * win_ms / 1000))
        hop = int(round(sample_rate * hop_ms / 1000))
        n_fft = 1 << (win - 1).bit_length()
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate=sample_rate,
            n_mfcc=n_mfcc,
            log_mels=True,
            melkwargs={"n_fft": n_fft, "win_length": win, "hop_length": hop, "n_mels": n_mels, "center": True},
        )

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """(batch, samples) → (batch, 1, n_mfcc, frames)."""
        return self.mfcc(waves).unsqueeze(1)


class ConvGroup(nn.Module):
    """BN → 3 × (conv 3×3 + ReLU) → max-pool 2."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        layers: list[nn.Module] = [nn.BatchNorm2d(c_in)]
        for i in range(3):
            layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


def cepstral_mvn(x: torch.Tensor) -> torch.Tensor:
    """Per-utterance cepstral mean and variance normalisation: each coefficient to zero mean, unit
    variance over time. (batch, 1, n_mfcc, frames) → same shape. Removes the long-term spectral
    envelope (channel and part of the speaker's timbre); the frame-to-frame dynamics stay."""
    mean = x.mean(dim=-1, keepdim=True)
    std = x.std(dim=-1, keepdim=True, unbiased=False)
    return (x - mean) / (std + 1e-5)


class SiameseNet(nn.Module):
    """G groups; the time-averaged map flattened over channels × cepstral bins, optionally projected.

    Args:
        groups: G, 1–5 conv groups (channels 64, 128, 256, 512, 512 × `width`).
        width: channel multiplier.
        sample_rate: input rate in Hz.
        n_mfcc: cepstra per frame.
        norm: "instance" (one mean/variance over the whole MFCC map of an utterance) or "cmvn"
            (per-coefficient mean/variance over time, `cepstral_mvn`).
        bottleneck: 0 keeps the pooled map as the feature; N > 0 adds a linear projection to N dims.

    `forward(waves (B, T))` → features (B, feature_dim); `embed_mfcc(mfcc (B, 1, n_mfcc, F))` does
    the same from precomputed cepstra (training crops).
    """

    def __init__(
        self,
        groups: int = 3,
        width: float = 1.0,
        sample_rate: int = 16000,
        n_mfcc: int = 32,
        norm: str = "instance",
        bottleneck: int = 0,
    ):
        super().__init__()
        if not 1 <= groups <= 5:
            raise ValueError("groups must be 1..5")
        if norm not in ("instance", "cmvn"):
            raise ValueError("norm must be instance or cmvn")
        channels = [max(4, int(round(c * width))) for c in PAPER_CHANNELS[:groups]]
        self.front = MfccFrontEnd(sample_rate, n_mfcc=n_mfcc)
        self.norm_kind = norm
        self.norm = nn.InstanceNorm2d(1, affine=False)  # per-utterance mean/variance of the whole MFCC map
        blocks, c_in = [], 1
        for c in channels:
            blocks.append(ConvGroup(c_in, c))
            c_in = c
        self.groups = nn.Sequential(*blocks)
        bins = n_mfcc
        for _ in range(groups):
            bins = (bins + 1) // 2
        pooled = channels[-1] * bins
        self.project = nn.Linear(pooled, bottleneck) if bottleneck > 0 else nn.Identity()
        self.feature_dim = bottleneck if bottleneck > 0 else pooled

    def mfcc(self, waves: torch.Tensor) -> torch.Tensor:
        """(B, T) → un-normalised MFCCs (B, 1, n_mfcc, frames)."""
        return self.front(waves)

    def embed_mfcc(self, mfcc: torch.Tensor) -> torch.Tensor:
        """Features (B, feature_dim) from MFCCs (B, 1, n_mfcc, frames): normalise, conv groups, mean over time, project."""
        x = cepstral_mvn(mfcc) if self.norm_kind == "cmvn" else self.norm(mfcc)
        x = self.groups(x)  # (B, C, bins, frames)
        return self.project(x.mean(dim=3).flatten(1))  # (B, feature_dim)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return self.embed_mfcc(self.front(waves))


def add_feature_noise(
    features: torch.Tensor, std: float, seed: int | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """features + N(0, std²) per element (std 0: unchanged). The noise comes from `generator`, or from a
    fresh generator seeded with `seed` (so a released vector is reproducible from its recorded seed)."""
    if std <= 0:
        return features
    if generator is None:
        generator = torch.Generator().manual_seed(int(seed or 0) & 0x7FFFFFFFFFFFFFFF)
    noise = torch.randn(features.shape, generator=generator, dtype=features.dtype)
    return features + std * noise.to(features.device)


class SpeakerAdversary(nn.Module):
    """Speaker classifier behind a gradient-reversal layer: learns the training speakers from the
    features while the reversed gradient pushes the extractor to remove what it uses."""

    def __init__(self, feature_dim: int, n_speakers: int, hidden: int = 256):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_speakers))

    def forward(self, features: torch.Tensor, weight: float) -> torch.Tensor:
        from anoncli.models.rdalm_nets import grad_reverse

        return self.body(grad_reverse(features, weight))


class UtilityHead(nn.Module):
    """The gender MLP of the paper (1024 units, dropout 0.5) on frozen features."""

    def __init__(self, feature_dim: int, n_classes: int, hidden: int = 1024, dropout: float = 0.5):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes)
        )

    def forward(self, features):
        return self.body(features)


def contrastive_loss(a: torch.Tensor, b: torch.Tensor, different: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """`(1−Y)·d² + Y·max(0, m − d)²` averaged over pairs; Y = 1 for a different-class pair."""
    d = F.pairwise_distance(a, b, eps=1e-8)
    y = different.float()
    return ((1 - y) * d.pow(2) + y * F.relu(margin - d).pow(2)).mean()
