"""Griffin-Lim from the mel alone: no original needed beyond its length.

The mel is mapped back to a linear magnitude with the filterbank's
pseudo-inverse (the minimum-norm least-squares solution that
`torchaudio.transforms.InverseMelScale(driver="gels")` also finds, computed
once here instead of per call), clipped at zero, and its phase estimated with
torchaudio's fast Griffin-Lim (momentum 0.99).
"""

from __future__ import annotations

import torch
import torchaudio

from anoncli.synthesis.base import Vocoder, fit_length

DEFAULT_ITERATIONS = 64
MIN_FRAMES = 4


class GriffinLimVocoder(Vocoder):
    """Vocoder `griffinlim`: mel -> linear magnitude by the filterbank's pseudo-inverse, phase by fast Griffin-Lim.

    Griffin & Lim, IEEE Trans. ASSP 1984; momentum as in Perraudin et al., WASPAA 2013
    (torchaudio's `GriffinLim`). Needs only the original's length.
    """

    name = "griffinlim"
    needs_original = False

    def __init__(
        self,
        sample_rate: int,
        device: str = "cpu",
        checkpoint: str | None = None,
        n_iter: int = DEFAULT_ITERATIONS,
        momentum: float = 0.99,
        **options,
    ):
        super().__init__(sample_rate, device, checkpoint, n_iter=int(n_iter), momentum=float(momentum), **options)
        self.n_iter = int(n_iter)
        # (n_freqs, n_mels): linear magnitude ~= inverse @ mel
        self.inverse = torch.linalg.pinv(self.mel.filterbank.T.to(torch.float64)).to(torch.float32).to(self.device)
        # rand_init=False: a zero-phase start makes the output reproducible
        # (torchaudio's random start ignores any generator we could seed).
        self.griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=self.mel.n_fft,
            n_iter=self.n_iter,
            win_length=self.mel.n_fft,
            hop_length=self.mel.hop_length,
            power=1.0,
            momentum=float(momentum),
            rand_init=False,
        ).to(self.device)

    def magnitude_from_logmel(self, logmel: torch.Tensor) -> torch.Tensor:
        """Linear magnitude (n_freqs, F), clipped at 0, from a log10 mel (n_mels, F)."""
        mel_power = torch.pow(10.0, logmel.to(self.device, torch.float32))
        return (self.inverse @ mel_power).clamp(min=0.0)

    @torch.no_grad()
    def synthesize(self, new_logmel: torch.Tensor, original_wave: torch.Tensor) -> torch.Tensor:
        self.check_shapes(new_logmel, original_wave)
        length = original_wave.shape[-1]
        magnitude = self.magnitude_from_logmel(new_logmel)
        # torch.stft reflect-pads n_fft/2 on each side, which needs a few frames:
        # very short inputs get silent frames appended (cropped off below).
        magnitude = torch.nn.functional.pad(magnitude, (0, max(0, MIN_FRAMES - magnitude.shape[-1])))
        frames = magnitude.shape[-1]
        # torch.stft(center=True) of (F - 1) * hop samples gives back exactly F frames
        self.griffin_lim.length = max(frames - 1, 1) * self.mel.hop_length
        wave = self.griffin_lim(magnitude.unsqueeze(0)).squeeze(0)
        # torchaudio centres frame i on sample i*hop; our LogMel centres it on
        # i*hop + hop/2, so the estimate starts half a hop later.
        wave = torch.nn.functional.pad(wave, (self.mel.hop_length // 2, 0))
        return fit_length(wave, length).cpu()
