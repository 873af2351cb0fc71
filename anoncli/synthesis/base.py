"""The vocoder interface, plus the helpers training-free backends share.

A vocoder turns a (possibly changed) log-mel back into a waveform of the same
length as the utterance it came from. Training-free backends may use the
original wave (its phase, its F0) and only apply the *change* the method made
in the mel domain; `needs_original` says whether they do.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from anoncli.synthesis.mel import LogMel

# A mel-domain change is applied as a gain; beyond +-60 dB it only amplifies
# numerical noise from bins that were silent in the original.
MAX_LOG10_GAIN = 3.0


class Vocoder(ABC):
    """Log-mel (n_mels, frames) + original wave (T,) -> wave (T,) at `sample_rate`."""

    name: ClassVar[str]
    needs_original: ClassVar[bool] = False

    def __init__(self, sample_rate: int, device: str = "cpu", checkpoint: str | None = None, **options: Any):
        self.sample_rate = int(sample_rate)
        self.device = torch.device(device)
        self.checkpoint = checkpoint
        self.options = options
        self.mel = LogMel(sample_rate=self.sample_rate).to(self.device)

    @abstractmethod
    def synthesize(self, new_logmel: torch.Tensor, original_wave: torch.Tensor) -> torch.Tensor:
        """Return a 1-D float32 wave with `original_wave.shape[-1]` samples (on the CPU)."""

    def config(self) -> dict[str, Any]:
        """Settings recorded in the manifest / run.json so a result can be reproduced."""
        return {"vocoder": self.name, **dict(self.options)}

    def check_shapes(self, new_logmel: torch.Tensor, original_wave: torch.Tensor) -> None:
        """Check that `new_logmel` is (n_mels, frames) with the frame count `LogMel` gives `original_wave`; ValueError otherwise."""
        frames = self.mel.frames_for(original_wave.shape[-1])
        if new_logmel.dim() != 2 or new_logmel.shape[0] != self.mel.n_mels:
            raise ValueError(f"expected a ({self.mel.n_mels}, frames) log-mel, got {tuple(new_logmel.shape)}")
        if new_logmel.shape[1] != frames:
            raise ValueError(
                f"log-mel has {new_logmel.shape[1]} frames but a {original_wave.shape[-1]}-sample wave has {frames}"
            )


def fit_length(wave: torch.Tensor, length: int) -> torch.Tensor:
    """Crop or zero-pad the last axis to `length` samples."""
    if wave.shape[-1] >= length:
        return wave[..., :length]
    return torch.nn.functional.pad(wave, (0, length - wave.shape[-1]))


def mel_gain_to_linear(mel: LogMel, original_mag: torch.Tensor, new_logmel: torch.Tensor) -> torch.Tensor:
    """Per-STFT-bin gain (n_freqs, frames) that moves the original's mel to `new_logmel`.

    The gain of each mel band is spread onto the STFT bins with the bins' own
    filterbank weights (log domain, so a band gain of 1 gives exactly 1); a bin
    no band covers takes the gain of the nearest band.
    """
    old_logmel = mel.mel_from_magnitude(original_mag.unsqueeze(0)).squeeze(0)
    log_gain = (new_logmel - old_logmel).clamp(-MAX_LOG10_GAIN, MAX_LOG10_GAIN)  # (n_mels, F)
    weights = mel.filterbank.to(log_gain)  # (n_freqs, n_mels)
    totals = weights.sum(dim=1, keepdim=True)
    uncovered = totals.squeeze(1) <= 0
    if bool(uncovered.any()):
        nearest = _nearest_band(weights)
        weights = weights.clone()
        weights[uncovered] = torch.nn.functional.one_hot(nearest[uncovered], weights.shape[1]).to(weights)
        totals = weights.sum(dim=1, keepdim=True)
    bin_log_gain = (weights / totals) @ log_gain  # (n_freqs, F)
    return torch.pow(10.0, bin_log_gain)


def _nearest_band(weights: torch.Tensor) -> torch.Tensor:
    """For each STFT bin, the mel band whose peak bin is closest."""
    peaks = weights.argmax(dim=0).to(torch.float32)  # (n_mels,)
    bins = torch.arange(weights.shape[0], dtype=torch.float32, device=weights.device)
    return (bins[:, None] - peaks[None, :].to(bins.device)).abs().argmin(dim=1)


def overlap_add(mel: LogMel, spectrum: torch.Tensor, length: int) -> torch.Tensor:
    """Inverse of `LogMel.complex_stft` for a (n_freqs, frames) complex spectrum -> (length,) wave.

    Weighted overlap-add with the synthesis window normalised by the summed
    squared window; torch.istft refuses center=False frames whose window sum
    touches zero at the padded edges, which we crop away anyway.
    """
    n_fft, hop = mel.n_fft, mel.hop_length
    frames = spectrum.shape[-1]
    window = torch.hann_window(n_fft, dtype=torch.float32, device=spectrum.device)
    chunks = torch.fft.irfft(spectrum, n=n_fft, dim=0) * window[:, None]  # (n_fft, F)
    total = (frames - 1) * hop + n_fft
    signal = torch.nn.functional.fold(
        chunks.unsqueeze(0), output_size=(1, total), kernel_size=(1, n_fft), stride=(1, hop)
    ).reshape(-1)
    envelope = torch.nn.functional.fold(
        (window**2)[:, None].expand(n_fft, frames).unsqueeze(0),
        output_size=(1, total),
        kernel_size=(1, n_fft),
        stride=(1, hop),
    ).reshape(-1)
    signal = signal / envelope.clamp(min=1e-8)
    start = mel.side_pad
    return fit_length(signal[start:], length)
