"""Phase-preserving resynthesis: the mel change becomes a gain on the original STFT.

The original phase (and so the original fine structure: timing, harmonics)
is kept; only the spectral envelope is moved as the new mel says. With no
change in the mel it returns the input up to STFT round-off. Trade-off: the
original harmonics, and so the original F0, survive whatever the method did to
the mel, since an 80-band gain cannot move a harmonic.
"""

from __future__ import annotations

import torch

from anoncli.synthesis.base import Vocoder, mel_gain_to_linear, overlap_add


class PhaseVocoder(Vocoder):
    """Vocoder `phase`: the mel change applied as a gain on the original STFT, whose phase is kept."""

    name = "phase"
    needs_original = True

    @torch.no_grad()
    def synthesize(self, new_logmel: torch.Tensor, original_wave: torch.Tensor) -> torch.Tensor:
        self.check_shapes(new_logmel, original_wave)
        wave = original_wave.to(self.device, torch.float32)
        spectrum = self.mel.complex_stft(wave.unsqueeze(0)).squeeze(0)  # (n_freqs, F)
        gain = mel_gain_to_linear(self.mel, spectrum.abs(), new_logmel.to(self.device, torch.float32))
        return overlap_add(self.mel, spectrum * gain, wave.shape[-1]).cpu()
