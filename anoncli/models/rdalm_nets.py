"""RDAL-M networks: a speech-removing U-Net mask, an event feature extractor and a speech adversary.

The U-Net (Jansson et al.-style, as RDAL-M uses it) predicts a sigmoid mask on
the STFT magnitude of a mixture so that mask × mixture ≈ the clean event. The
feature extractor reads the log-mel of the masked magnitude and outputs a
64-dimensional embedding that an event classifier uses; a speech-presence
discriminator sits behind a gradient-reversal layer so the embedding learns
to hide whether speech was present.

At anonymization the mask is level-invariant: the U-Net reads the mixture's
magnitude scaled to `REFERENCE_DBFS` (`level_gain`), and the mask it returns
is applied to the unscaled mixture, so the same sound at -48 or -18 dBFS
loses the same parts, and the output keeps the input's level. With
`feature_gain` (models trained so) the extractor also reads the masked
magnitude at the reference level, so the embedding does not carry the input's
level either.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

UNET_CHANNELS = (16, 32, 64, 128, 256, 512)
EXTRACTOR_CHANNELS = (64, 128, 256, 512)
# The level the U-Net reads at anonymization: the median RMS level of the shipped model's training
# mixtures (2 s clips, UrbanSound8K events at their own level plus speech at -5..10 dB event-to-speech
# ratio: -22.2 dBFS; 5-95 % -42 .. -14 dBFS). The mask reads log(1 + |STFT|), which is nearly
# linear for quiet input and logarithmic for loud, so without this one mixture gave a different mask
# at each level: at -48 dBFS it removed almost nothing (output 0.98 correlated with the input).
REFERENCE_DBFS = -22.0
# At most this much gain (dB): a near-silent input (below about -82 dBFS) is not raised to the
# reference from its quantisation noise. The output is mask x input, never louder than the input.
MAX_LEVEL_GAIN_DB = 60.0


def level_gain(
    wave: torch.Tensor, sample_rate: int, reference_dbfs: float = REFERENCE_DBFS, max_gain_db: float = MAX_LEVEL_GAIN_DB
) -> torch.Tensor:
    """Gain (0-d float32 tensor on the wave's device) that brings a wave (samples,) at `sample_rate` Hz to `reference_dbfs`.

    The level is the RMS (full scale 1.0) of the span from its first to its
    last sound (`anoncli.dsp.levels.active_span`: frames within 40 dB of the
    loudest, plus 0.3 s), so leading or trailing silence does not lower it;
    the gain is at most `max_gain_db`; 1 for digital silence, no samples or a
    non-finite wave.
    """
    from anoncli.dsp.levels import active_span

    samples = wave.detach().to("cpu", torch.float64).numpy()
    start, stop = active_span(samples, sample_rate)
    part = samples[start:stop]
    power = float((part * part).mean()) if part.size else 0.0
    if not (power > 0.0 and math.isfinite(power)):
        return torch.ones((), dtype=torch.float32, device=wave.device)
    gain_db = min(reference_dbfs - 10.0 * math.log10(power), max_gain_db)
    return torch.tensor(10.0 ** (gain_db / 20.0), dtype=torch.float32, device=wave.device)


class Spectrogram(nn.Module):
    """STFT front end shared by training and anonymization (mixture phase kept for resynthesis)."""

    def __init__(self, n_fft: int = 512, hop: int = 128):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def stft(self, waves: torch.Tensor) -> torch.Tensor:
        """Complex STFT (B, n_fft // 2 + 1, frames) of (B, samples), Hann window, centred."""
        return torch.stft(waves, self.n_fft, self.hop, window=self.window, center=True, return_complex=True)

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """Waves (B, length) from a complex STFT (B, n_fft // 2 + 1, frames); inverse of `stft`."""
        return torch.istft(spec, self.n_fft, self.hop, window=self.window, center=True, length=length)


class SeparationUNet(nn.Module):
    """6 stride-2 conv layers (k5, BN, LeakyReLU 0.2), transposed-conv decoder with skips, sigmoid mask.

    Works on (B, 1, F, T) magnitudes; F and T are padded internally to a
    multiple of 64 and the mask is cropped back, so any clip length works.
    """

    def __init__(self, width: float = 1.0):
        super().__init__()
        ch = [max(2, int(round(c * width))) for c in UNET_CHANNELS]
        self.encoder = nn.ModuleList()
        c_in = 1
        for c in ch:
            self.encoder.append(
                nn.Sequential(nn.Conv2d(c_in, c, 5, stride=2, padding=2), nn.BatchNorm2d(c), nn.LeakyReLU(0.2))
            )
            c_in = c
        self.decoder = nn.ModuleList()
        for i in range(len(ch) - 1, 0, -1):
            # input: deepest map (first) or previous decoder output concatenated with the skip
            c_in = ch[i] if i == len(ch) - 1 else ch[i] * 2
            layers = [
                nn.ConvTranspose2d(c_in, ch[i - 1], 5, stride=2, padding=2, output_padding=1),
                nn.BatchNorm2d(ch[i - 1]),
                nn.ReLU(),
            ]
            if len(self.decoder) < 3:
                layers.append(nn.Dropout2d(0.5))
            self.decoder.append(nn.Sequential(*layers))
        self.final = nn.ConvTranspose2d(ch[0] * 2, 1, 5, stride=2, padding=2, output_padding=1)

    def forward(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Mask in [0, 1] with the shape of `magnitude` (B, 1, F, T)."""
        f, t = magnitude.shape[-2:]
        pad_f, pad_t = (-f) % 64, (-t) % 64
        x = F.pad(torch.log1p(magnitude), (0, pad_t, 0, pad_f))
        skips = []
        for layer in self.encoder:
            x = layer(x)
            skips.append(x)
        for k, layer in enumerate(self.decoder):
            x = layer(x if k == 0 else torch.cat([x, skips[-1 - k]], dim=1))
        mask = torch.sigmoid(self.final(torch.cat([x, skips[0]], dim=1)))
        return mask[..., :f, :t]


class LogMel(nn.Module):
    """64-band log-mel of a magnitude spectrogram (no STFT inside: it reads the masked magnitude)."""

    def __init__(self, sample_rate: int = 16000, n_fft: int = 512, n_mels: int = 64):
        super().__init__()
        import torchaudio

        fb = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate)
        self.register_buffer("fb", fb, persistent=False)

    def forward(self, magnitude: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, T) → (B, 1, n_mels, T)."""
        mel = torch.einsum("bcft,fm->bcmt", magnitude.pow(2), self.fb)
        return torch.log(mel + 1e-6)


class FeatureExtractor(nn.Module):
    """4 conv blocks (64/128/256/512 × width), global max pool, Linear → 64-d embedding."""

    def __init__(self, width: float = 1.0, embedding: int = 64):
        super().__init__()
        blocks, c_in = [], 1
        for c in (max(4, int(round(c * width))) for c in EXTRACTOR_CHANNELS):
            blocks += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
            c_in = c
        self.blocks = nn.Sequential(nn.BatchNorm2d(1), *blocks)
        self.proj = nn.Linear(c_in, embedding)

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        x = self.blocks(logmel)
        return self.proj(torch.amax(x, dim=(2, 3)))


class EventClassifier(nn.Module):
    """ReLU + linear: event embeddings (B, embedding) -> event logits (B, n_events)."""

    def __init__(self, embedding: int, n_events: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Linear(embedding, n_events))

    def forward(self, z):
        return self.body(z)


class SpeechDiscriminator(nn.Module):
    """MLP embedding → hidden layers → 1 logit (speech present).

    `hidden` (48, 32, 16) is the paper's adversary; (256,) with dropout 0.3 is
    the family of the evaluation attacker (`scoring.probe`'s MLP), so the
    adversary the extractor trains against is as strong as the one that
    measures it. `standardize` puts a batch norm without affine parameters in
    front (the evaluation attacker also standardises its input).
    """

    def __init__(
        self,
        embedding: int = 64,
        standardize: bool = False,
        hidden: tuple[int, ...] = (48, 32, 16),
        dropout: float = 0.0,
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.BatchNorm1d(embedding, affine=False)] if standardize else []
        c_in = embedding
        for width in hidden:
            layers += [nn.Linear(c_in, width), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout > 0 else [])
            c_in = width
        layers.append(nn.Linear(c_in, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, z):
        return self.body(z).squeeze(-1)


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight):
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.weight * grad, None


def grad_reverse(x: torch.Tensor, weight: float) -> torch.Tensor:
    """Identity forward; backward multiplies the gradient by −weight."""
    return _ReverseGrad.apply(x, float(weight))


def grl_weight(epoch: int, warmup_epochs: int, ramp_epochs: int, max_weight: float = 1.0) -> float:
    """0 during the first `warmup_epochs` epochs, then a smooth DANN-style ramp to `max_weight`.

    `epoch` counts from 0. Over the ramp, p goes 0→1 and the weight follows
    max · (2 / (1 + e^(−10p)) − 1), reaching max at the end of the ramp.
    """
    if epoch < warmup_epochs:
        return 0.0
    if ramp_epochs <= 0:
        return float(max_weight)
    p = min(1.0, (epoch - warmup_epochs + 1) / ramp_epochs)
    return float(max_weight * (2.0 / (1.0 + torch.exp(torch.tensor(-10.0 * p)).item()) - 1.0))


class RdalmPipeline(nn.Module):
    """Frozen U-Net + extractor + event classifier, as `anoncli anonymize --method rdalm` runs them."""

    def __init__(
        self,
        sample_rate: int,
        n_fft: int,
        hop: int,
        unet_width: float,
        extractor_width: float,
        embedding: int,
        n_events: int,
        feature_gain: bool = False,
    ):
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.feature_gain = bool(feature_gain)
        self.spec = Spectrogram(n_fft, hop)
        self.unet = SeparationUNet(unet_width)
        self.logmel = LogMel(sample_rate, n_fft)
        self.extractor = FeatureExtractor(extractor_width, embedding)
        self.classifier = EventClassifier(embedding, n_events)

    def masked(self, waves: torch.Tensor, gains: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, samples) → (masked magnitude (B, 1, F, T), complex mixture STFT (B, F, T)).

        gains (B,): the U-Net reads the magnitude times each gain (`level_gain`),
        and its mask multiplies the unscaled magnitude; None reads it as it is
        (training).
        """
        spec = self.spec.stft(waves)
        mag = spec.abs().unsqueeze(1)
        seen = mag if gains is None else mag * gains.reshape(-1, 1, 1, 1)
        return self.unet(seen) * mag, spec

    def suppress(self, wave: torch.Tensor) -> torch.Tensor:
        """Speech-suppressed audio (samples,): the level-invariant mask × mixture STFT, with the mixture's phase."""
        masked, spec = self.masked(wave[None], level_gain(wave, self.sample_rate)[None])
        phase = spec / spec.abs().clamp_min(1e-8)
        return self.spec.istft(masked[:, 0] * phase, len(wave))[0]

    def features(self, waves: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
        """Log-mels (B, 1, n_mels, T) the extractor reads: of the masked magnitude of waves (B, samples), read by
        the U-Net at `gains` (B,) (`level_gain`); with `feature_gain`, the masked magnitude is scaled by them too."""
        masked, _ = self.masked(waves, gains)
        return self.logmel(masked * gains.reshape(-1, 1, 1, 1) if self.feature_gain else masked)

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        """The event embedding (embedding,) of one wave (samples,) after speech suppression (level-invariant mask)."""
        return self.extractor(self.features(wave[None], level_gain(wave, self.sample_rate)[None]))[0]
