"""MelGAN generator and discriminator with melgan-neurips' layout and state-dict keys.

The public checkpoints (`multi_speaker.pt`, `linda_johnson.pt`) are plain state
dicts of the generator whose convolutions carry *legacy* weight-norm
parameters: `model.N.weight_g`, `model.N.weight_v`, `model.N.bias`. Torch now
deprecates that API, so the weight-normalised convolutions here are small
modules that own parameters of exactly those names and shapes; a public
checkpoint loads with `load_state_dict(strict=True)`.

Mel convention: those checkpoints were trained on 22.05 kHz audio with the
same STFT/mel settings as `anoncli.synthesis.mel.LogMel(22050)` (n_fft 1024,
hop 256, 80 Slaney mels 0 - 11025 Hz, log10 of magnitude, clamp 1e-5); at any
other rate the mel bands mean other frequencies. See docs/vocoders.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from anoncli.errors import AnoncliError

RATIOS = (8, 8, 2, 2)
PUBLIC_SAMPLE_RATE = 22050  # what a bare melgan-neurips state dict was trained at


def _norm_except_dim0(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))


class _WeightNormMixin:
    """weight = g * v / ||v||, the norm taken over every axis but the first (legacy weight_norm, dim=0)."""

    weight_g: nn.Parameter
    weight_v: nn.Parameter

    def _init_weight_norm(self, template: nn.Module) -> None:
        # PyTorch's default conv initialisation, then g = ||v|| so that weight == v at the
        # start. (melgan-neurips also calls a N(0, 0.02) init, but on the weight that
        # weight_norm recomputes from g and v, so it has no effect: the default init is
        # what its checkpoints started from. N(0, 0.02) on v gives a 1e-11 output.)
        v = template.weight.detach().clone()
        # Registered in legacy weight_norm's order: bias, weight_g, weight_v.
        self.bias = nn.Parameter(template.bias.detach().clone())
        self.weight_g = nn.Parameter(_norm_except_dim0(v).clone())
        self.weight_v = nn.Parameter(v)

    @property
    def weight(self) -> torch.Tensor:
        """The effective kernel g * v / ||v||, recomputed from the parameters on every access."""
        return self.weight_v * (self.weight_g / _norm_except_dim0(self.weight_v))


class WNConv1d(_WeightNormMixin, nn.Module):
    """`nn.Conv1d` with legacy weight-norm parameters (bias, weight_g, weight_v), so melgan-neurips checkpoints load strictly."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
    ):
        super().__init__()
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self._init_weight_norm(nn.Conv1d(in_channels, out_channels, kernel_size, groups=groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class WNConvTranspose1d(_WeightNormMixin, nn.Module):
    """`nn.ConvTranspose1d` with legacy weight-norm parameters (bias, weight_g, weight_v; g of shape (in, 1, 1))."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int, output_padding: int
    ):
        super().__init__()
        self.stride, self.padding, self.output_padding = stride, padding, output_padding
        # ConvTranspose weights are (in, out, k): legacy weight_norm's g is then (in, 1, 1).
        self._init_weight_norm(nn.ConvTranspose1d(in_channels, out_channels, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose1d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding)


class ResidualBlock(nn.Module):
    """LReLU -> reflect pad d -> conv k3 dilation d -> LReLU -> conv k1, plus a k1 shortcut."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.ReflectionPad1d(dilation),
            WNConv1d(channels, channels, kernel_size=3, dilation=dilation),
            nn.LeakyReLU(0.2),
            WNConv1d(channels, channels, kernel_size=1),
        )
        self.shortcut = WNConv1d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


class Generator(nn.Module):
    """(B, n_mels, frames) log-mel -> (B, 1, frames * prod(ratios)) wave in [-1, 1]."""

    def __init__(self, n_mels: int = 80, ngf: int = 32, n_residual_layers: int = 3, ratios: tuple[int, ...] = RATIOS):
        super().__init__()
        self.n_mels, self.ngf, self.n_residual_layers, self.ratios = n_mels, ngf, n_residual_layers, tuple(ratios)
        self.hop_length = 1
        for r in self.ratios:
            self.hop_length *= r
        channels = ngf * 2 ** len(self.ratios)
        layers: list[nn.Module] = [nn.ReflectionPad1d(3), WNConv1d(n_mels, channels, kernel_size=7)]
        for r in self.ratios:
            layers += [
                nn.LeakyReLU(0.2),
                WNConvTranspose1d(
                    channels, channels // 2, kernel_size=2 * r, stride=r, padding=r // 2 + r % 2, output_padding=r % 2
                ),
            ]
            channels //= 2
            layers += [ResidualBlock(channels, dilation=3**j) for j in range(n_residual_layers)]
        layers += [nn.LeakyReLU(0.2), nn.ReflectionPad1d(3), WNConv1d(channels, 1, kernel_size=7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.model(logmel)

    def architecture(self) -> dict[str, Any]:
        """The constructor arguments (n_mels, ngf, n_residual_layers, ratios) as JSON-ready values, to rebuild the generator."""
        return {
            "n_mels": self.n_mels,
            "ngf": self.ngf,
            "n_residual_layers": self.n_residual_layers,
            "ratios": list(self.ratios),
        }


class ScaleDiscriminator(nn.Module):
    """One scale of the multi-scale discriminator; returns every layer's output (feature matching)."""

    def __init__(self, ndf: int = 16, n_layers: int = 4, downsampling: int = 4, max_channels: int = 1024):
        super().__init__()
        layers = [nn.Sequential(nn.ReflectionPad1d(7), WNConv1d(1, ndf, kernel_size=15), nn.LeakyReLU(0.2))]
        channels = ndf
        for _ in range(n_layers):
            previous, channels = channels, min(channels * downsampling, max_channels)
            layers.append(
                nn.Sequential(
                    WNConv1d(
                        previous,
                        channels,
                        kernel_size=downsampling * 10 + 1,
                        stride=downsampling,
                        padding=downsampling * 5,
                        groups=previous // 4,
                    ),
                    nn.LeakyReLU(0.2),
                )
            )
        previous, channels = channels, min(channels * 2, max_channels)
        layers.append(nn.Sequential(WNConv1d(previous, channels, kernel_size=5, padding=2), nn.LeakyReLU(0.2)))
        layers.append(WNConv1d(channels, 1, kernel_size=3, padding=1))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for layer in self.layers:
            x = layer(x)
            outputs.append(x)
        return outputs


class MultiScaleDiscriminator(nn.Module):
    """Three discriminators on the wave, the wave average-pooled by 2 and by 4."""

    def __init__(
        self, scales: int = 3, ndf: int = 16, n_layers: int = 4, downsampling: int = 4, max_channels: int = 1024
    ):
        super().__init__()
        self.discriminators = nn.ModuleList(
            ScaleDiscriminator(ndf, n_layers, downsampling, max_channels) for _ in range(scales)
        )
        self.pool = nn.AvgPool1d(4, stride=2, padding=1, count_include_pad=False)

    def forward(self, wave: torch.Tensor) -> list[list[torch.Tensor]]:
        results = []
        for index, discriminator in enumerate(self.discriminators):
            if index:
                wave = self.pool(wave)
            results.append(discriminator(wave))
        return results


@torch.no_grad()
def generate(
    generator: Generator, logmel: torch.Tensor, chunk_frames: int = 1024, context_frames: int = 32
) -> torch.Tensor:
    """(B, n_mels, F) -> (B, F * hop) in chunks, so a long file needs bounded memory.

    Each chunk is generated with `context_frames` of neighbouring mel on both
    sides (more than the generator's receptive field of about 20 frames) and
    cropped, so the seams match a single pass up to edge padding effects.
    """
    frames = logmel.shape[-1]
    if frames <= chunk_frames + 2 * context_frames:
        return generator(logmel)[:, 0]
    hop = generator.hop_length
    pieces = []
    for start in range(0, frames, chunk_frames):
        stop = min(frames, start + chunk_frames)
        left, right = max(0, start - context_frames), min(frames, stop + context_frames)
        wave = generator(logmel[..., left:right])[:, 0]
        pieces.append(wave[:, (start - left) * hop : (stop - left) * hop])
    return torch.cat(pieces, dim=-1)


def _infer_architecture(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    if "model.1.weight_v" not in state:
        raise ValueError("no 'model.1.weight_v' key: not a melgan-neurips generator state dict")
    first = state["model.1.weight_v"]  # (ngf * 16, n_mels, 7)
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"model\.(\d+)\.shortcut\.", k))}
    n_residual_layers = len(blocks) // len(RATIOS)
    return {
        "n_mels": int(first.shape[1]),
        "ngf": int(first.shape[0]) // 2 ** len(RATIOS),
        "n_residual_layers": n_residual_layers,
        "ratios": list(RATIOS),
    }


def _find_checkpoint_file(path: Path) -> Path:
    if path.is_dir():
        for name in ("checkpoints/best.pt", "checkpoints/last.pt", "generator.pt", "model.pt"):
            if (path / name).is_file():
                return path / name
        raise AnoncliError(
            f"{path}: no checkpoints/best.pt, checkpoints/last.pt, generator.pt or model.pt in this MelGAN run folder"
        )
    if not path.is_file():
        raise AnoncliError(f"{path}: no such MelGAN checkpoint")
    return path


def load_melgan(
    path: str | Path, sample_rate: int | None = None, device: str | torch.device = "cpu"
) -> tuple[Generator, int]:
    """Load a generator from a melgan-neurips state dict or from our training output.

    Returns (generator in eval mode, the sample rate its mels were made at).
    A bare state dict carries no sample rate: it is taken as 22050 Hz (the
    public checkpoints) unless `sample_rate` says otherwise. Our checkpoints
    are dicts {"generator": state_dict, "config": {"sample_rate": ...}, ...}.
    """
    file = _find_checkpoint_file(Path(path))
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # a pickle that needs code, a truncated file, not a torch file
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise AnoncliError(f"{file}: cannot load as a MelGAN checkpoint ({reason})") from None
    if not isinstance(payload, dict):
        raise AnoncliError(f"{file}: not a state dict")
    rate = sample_rate
    state = payload
    if "generator" in payload and isinstance(payload["generator"], dict):
        state = payload["generator"]
        rate = rate or int(payload.get("config", {}).get("sample_rate", PUBLIC_SAMPLE_RATE))
    rate = int(rate or PUBLIC_SAMPLE_RATE)
    try:
        generator = Generator(**_infer_architecture(state))
        generator.load_state_dict(state, strict=True)
    except (ValueError, RuntimeError) as err:
        raise AnoncliError(f"{file}: not a MelGAN generator ({str(err).splitlines()[0]})") from None
    return generator.to(device).eval(), rate
