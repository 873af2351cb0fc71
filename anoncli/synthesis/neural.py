"""The MelGAN vocoder backend: a trained generator turns the mel into a wave.

When the generator was trained at another rate than the method works at (the
public checkpoints are 22.05 kHz, our methods work at 16 kHz) the mel is
carried over: back to a linear magnitude with the filterbank's pseudo-inverse,
re-gridded in frequency (Hz) and time (seconds), re-measured with the
generator's own mel filterbank, vocoded, and the wave resampled back.
"""

from __future__ import annotations

import torch

from anoncli.audio import resample
from anoncli.errors import AnoncliError
from anoncli.synthesis.base import Vocoder, fit_length
from anoncli.synthesis.mel import LogMel
from anoncli.synthesis.melgan import generate, load_melgan


class MelGANVocoder(Vocoder):
    """Vocoder `melgan`: a trained MelGAN generator (Kumar et al., NeurIPS 2019) turns the mel into a wave.

    A generator trained at another rate gets the mel re-gridded to its rate and
    its wave resampled back. Raises AnoncliError when no checkpoint is found or its
    mel count differs.
    """

    name = "melgan"
    needs_original = False

    def __init__(
        self,
        sample_rate: int,
        device: str = "cpu",
        checkpoint: str | None = None,
        checkpoint_sample_rate: int | None = None,
        **options,
    ):
        checkpoint = checkpoint or _registered_checkpoint()
        super().__init__(sample_rate, device, checkpoint, **options)
        self.generator, self.model_rate = load_melgan(checkpoint, checkpoint_sample_rate, self.device)
        self.model_mel = LogMel(sample_rate=self.model_rate).to(self.device)
        if self.generator.n_mels != self.mel.n_mels:
            raise AnoncliError(f"{checkpoint}: generator expects {self.generator.n_mels} mels, not {self.mel.n_mels}")
        if self.model_rate != self.sample_rate:
            self.inverse = torch.linalg.pinv(self.mel.filterbank.T.double()).float().to(self.device)

    def config(self):
        return {"vocoder": self.name, "checkpoint": str(self.checkpoint), "checkpoint_sample_rate": self.model_rate}

    def to_model_rate(self, logmel: torch.Tensor, length: int) -> torch.Tensor:
        """Re-express a working-rate log-mel (n_mels, F) as the generator's rate log-mel."""
        magnitude = (self.inverse @ torch.pow(10.0, logmel)).clamp(min=0.0)  # (n_freqs, F)
        source_hz = torch.linspace(0, self.sample_rate / 2, magnitude.shape[0], device=magnitude.device)
        target_hz = torch.linspace(0, self.model_rate / 2, self.model_mel.n_freqs, device=magnitude.device)
        regridded = _interp_rows(magnitude.T, source_hz, target_hz).T  # zero above the old Nyquist
        frames = self.model_mel.frames_for(round(length * self.model_rate / self.sample_rate))
        regridded = torch.nn.functional.interpolate(regridded[None], size=frames, mode="linear", align_corners=False)[0]
        return self.model_mel.mel_from_magnitude(regridded[None])[0]

    @torch.no_grad()
    def synthesize(self, new_logmel: torch.Tensor, original_wave: torch.Tensor) -> torch.Tensor:
        self.check_shapes(new_logmel, original_wave)
        length = original_wave.shape[-1]
        logmel = new_logmel.to(self.device, torch.float32)
        if self.model_rate != self.sample_rate:
            logmel = self.to_model_rate(logmel, length)
        wave = generate(self.generator, logmel[None])[0]
        if self.model_rate != self.sample_rate:
            wave = resample(wave, self.model_rate, self.sample_rate)
        return fit_length(wave, length).cpu()


def _registered_checkpoint() -> str:
    """The MelGAN that `anoncli train --method melgan` registered in the local model folder."""
    from anoncli import modelstore

    try:
        return str(modelstore.find("melgan"))
    except AnoncliError:
        raise AnoncliError(
            "the melgan vocoder needs a checkpoint: train one with "
            "`anoncli train --method melgan CORPUS --out RUN` (it is then found automatically), "
            "or pass a melgan-neurips state dict such as multi_speaker.pt"
        ) from None


def _interp_rows(values: torch.Tensor, x: torch.Tensor, x_new: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of each row of `values` (R, len(x)) at x_new; zero outside x."""
    index = torch.searchsorted(x, x_new).clamp(1, len(x) - 1)
    left, right = x[index - 1], x[index]
    weight = ((x_new - left) / (right - left)).clamp(0, 1)
    out = values[:, index - 1] * (1 - weight) + values[:, index] * weight
    return torch.where((x_new > x[-1])[None, :], torch.zeros_like(out), out)
