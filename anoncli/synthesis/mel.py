"""The log-mel front end shared by PCMelGAN, GenGAN, PSEGAN and the MelGAN vocoder.

Convention (fixed here, relied on by every model and vocoder):

* magnitude STFT, Hann window of n_fft, hop `hop_length`, `center=False`;
* the wave is first zero-padded at the end to `frames * hop` samples with
  `frames = ceil(T / hop)` (at least 1), then padded by `(n_fft - hop) / 2`
  on each side (reflect when the wave is long enough, zeros otherwise), as the
  original MelGAN code does. Frame i is then centred on sample `i*hop + hop/2`,
  i.e. it describes exactly the output samples `[i*hop, (i+1)*hop)` a hop-256
  vocoder produces for it, and `frames_for(T) == ceil(T / hop)`;
* Slaney mel scale and Slaney area normalisation (what librosa's `filters.mel`
  gives by default, and so what the public melgan-neurips checkpoints saw);
* `log10(clamp(mel, 1e-5))`.

Per-utterance normalisation `(x - mu) / (3 sigma + 1e-6)` clamped to [-1, 1]
is what the GAN methods' code actually does (not a [0, 1] scaling); mu and
sigma are kept per utterance so the change can be undone before synthesis.
"""

from __future__ import annotations

import math

import torch
import torchaudio

LOG_FLOOR = 1e-5
NORM_EPS = 1e-6


class LogMel(torch.nn.Module):
    """Waveform (B, T) -> log10 magnitude mel (B, n_mels, ceil(T / hop))."""

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 1024,
        hop_length: int = 256,
        n_mels: int = 80,
        fmin: float = 0.0,
        fmax: float | None = None,
    ):
        super().__init__()
        if (n_fft - hop_length) % 2:
            raise ValueError("n_fft - hop_length must be even so both sides get the same padding")
        self.sample_rate = int(sample_rate)
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.n_mels = int(n_mels)
        self.fmin = float(fmin)
        self.fmax = float(fmax) if fmax is not None else sample_rate / 2.0
        self.side_pad = (self.n_fft - self.hop_length) // 2
        self.spectrogram = torchaudio.transforms.Spectrogram(
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.n_fft,
            window_fn=torch.hann_window,
            power=None,
            center=False,
        )
        self.mel_scale = torchaudio.transforms.MelScale(
            n_mels=self.n_mels,
            sample_rate=self.sample_rate,
            f_min=self.fmin,
            f_max=self.fmax,
            n_stft=self.n_fft // 2 + 1,
            norm="slaney",
            mel_scale="slaney",
        )

    @property
    def n_freqs(self) -> int:
        """STFT bins: n_fft // 2 + 1."""
        return self.n_fft // 2 + 1

    @property
    def filterbank(self) -> torch.Tensor:
        """The (n_freqs, n_mels) matrix mapping a magnitude spectrum to mel bands."""
        return self.mel_scale.fb

    def frames_for(self, num_samples: int) -> int:
        """Number of mel frames for a wave of `num_samples` samples: ceil(T / hop), at least 1."""
        return max(1, math.ceil(int(num_samples) / self.hop_length))

    def samples_for(self, frames: int) -> int:
        """Samples a hop-sized vocoder produces for `frames` frames (before cropping to T)."""
        return int(frames) * self.hop_length

    def pad(self, wave: torch.Tensor) -> torch.Tensor:
        """Pad (B, T) so that a center=False STFT yields exactly ceil(T / hop) frames."""
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        length = wave.shape[-1]
        target = self.samples_for(self.frames_for(length))
        if target > length:
            wave = torch.nn.functional.pad(wave, (0, target - length))
        # Reflect padding needs more samples than it adds; tiny inputs get zeros.
        mode = "reflect" if wave.shape[-1] > self.side_pad else "constant"
        padded = torch.nn.functional.pad(wave.unsqueeze(1), (self.side_pad, self.side_pad), mode=mode)
        return padded.squeeze(1)

    def complex_stft(self, wave: torch.Tensor) -> torch.Tensor:
        """Complex STFT (B, n_freqs, frames) with the padding convention above."""
        return self.spectrogram(self.pad(wave))

    def magnitude_stft(self, wave: torch.Tensor) -> torch.Tensor:
        """Magnitude STFT (B, n_freqs, frames)."""
        return self.complex_stft(wave).abs()

    def mel_from_magnitude(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Log10 mel (B, n_mels, frames) from a magnitude STFT (B, n_freqs, frames)."""
        return torch.log10(torch.clamp(self.mel_scale(magnitude), min=LOG_FLOOR))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.mel_from_magnitude(self.magnitude_stft(wave))


def normalize(logmel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-utterance (x - mu) / (3 sigma + 1e-6), clamped to [-1, 1].

    `logmel` is (B, n_mels, frames) or (n_mels, frames); mu and sigma come back
    with shape (B, 1, 1) (or (1, 1)), statistics over all bins of one utterance.
    """
    dims = (-2, -1)
    mu = logmel.mean(dim=dims, keepdim=True)
    sigma = logmel.std(dim=dims, keepdim=True, unbiased=False)
    norm = ((logmel - mu) / (3.0 * sigma + NORM_EPS)).clamp(-1.0, 1.0)
    return norm, mu, sigma


def denormalize(norm: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Undo `normalize` (exact for values that were not clamped)."""
    return norm * (3.0 * sigma + NORM_EPS) + mu
