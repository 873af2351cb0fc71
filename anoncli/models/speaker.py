"""A frozen, differentiable speaker matcher for PSEGAN's speaker-consistency loss.

It is resemblyzer's bundled VoiceEncoder (3-layer LSTM over 40-band mel power
spectra at 16 kHz, 25 ms windows, 10 ms hop; L2-normalised 256-d embedding)
fed from *our* log-mel (80 bands, n_fft 1024, hop 256) so that gradients flow
from the embedding back into the generator's mel:

  log10 mel80 -> magnitude per STFT bin (each band's mean bin magnitude
  spread back over its bins) -> power -> 40 Slaney mel bands -> time
  resampled from hop 256 to hop 160 -> LSTM.

The spectrum is only an approximation of what resemblyzer computes from a
waveform, but input and output speech go through the same path, so the
cosine between their embeddings measures what the generator changed.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchaudio
from torch import nn

from anoncli.errors import AnoncliError

EMBED_DIM = 256
ENCODER_RATE = 16000
ENCODER_WIN = 400  # 25 ms at 16 kHz
ENCODER_HOP = 160  # 10 ms at 16 kHz
ENCODER_MELS = 40


def resemblyzer_weights() -> Path:
    """The encoder weights bundled with the resemblyzer package (found without importing it: its
    import pulls in librosa and webrtcvad, which the matcher does not need)."""
    import importlib.util

    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.origin:
        raise AnoncliError("the PSEGAN speaker matcher needs the resemblyzer package (pip install resemblyzer)")
    path = Path(spec.origin).parent / "pretrained.pt"
    if not path.is_file():
        raise AnoncliError(f"{path}: resemblyzer's bundled encoder weights are missing")
    return path


class MelSpeakerEncoder(nn.Module):
    """resemblyzer's frozen GE2E encoder fed from our log-mels: (B, n_mels, F) -> (B, 256) L2-normalised, differentiable.

    Raises AnoncliError when the rate is not 16 kHz or resemblyzer's weights are missing.
    """

    def __init__(
        self, filterbank: torch.Tensor, sample_rate: int, n_fft: int, hop_length: int, weights: Path | None = None
    ):
        super().__init__()
        if sample_rate != ENCODER_RATE:
            raise AnoncliError(f"the resemblyzer speaker matcher works at 16 kHz, not {sample_rate} Hz")
        self.lstm = nn.LSTM(ENCODER_MELS, EMBED_DIM, 3, batch_first=True)
        self.linear = nn.Linear(EMBED_DIM, EMBED_DIM)
        state = torch.load(weights or resemblyzer_weights(), map_location="cpu", weights_only=True)["model_state"]
        self.load_state_dict({k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))})
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        self.eval()
        fb = filterbank.detach().float()  # (n_freqs, n_mels)
        band_bins = fb.sum(dim=0).clamp(min=1e-8)  # bins' weight per band
        spread = fb / fb.sum(dim=1, keepdim=True).clamp(min=1e-8)  # (n_freqs, n_mels), rows sum to 1
        self.register_buffer("to_bins", spread / band_bins[None, :])  # mel magnitude -> bin magnitude
        fb40 = torchaudio.functional.melscale_fbanks(
            n_fft // 2 + 1, 0.0, sample_rate / 2.0, ENCODER_MELS, sample_rate, norm="slaney", mel_scale="slaney"
        )
        self.register_buffer("fb40", fb40)  # (n_freqs, 40)
        # resemblyzer's 400-sample Hann window has 400/n_fft of our window's gain (power: squared).
        self.power_scale = (ENCODER_WIN / float(n_fft)) ** 2
        self.time_scale = hop_length / float(ENCODER_HOP)

    def train(self, mode: bool = True):
        """Always eval mode: the encoder is frozen whatever the parent module asks."""
        # Frozen: stays in eval mode whatever the parent module does.
        return super().train(False)

    def encoder_input(self, logmel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, F) log10 magnitude mel -> (B, F', 40) mel power at a 10 ms hop."""
        magnitude = torch.pow(10.0, logmel.float())
        bins = torch.einsum("fm,bmt->bft", self.to_bins, magnitude)
        return self.power_input(bins.pow(2))

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, F) -> (B, 256) L2-normalised speaker embeddings."""
        return self.embed_frames(self.encoder_input(logmel))

    def embed_frames(self, mel40: torch.Tensor) -> torch.Tensor:
        """(B, F, 40) mel power at resemblyzer's 10 ms hop -> (B, 256) L2-normalised embeddings."""
        with torch.backends.cudnn.flags(enabled=False):  # cuDNN LSTM has no double backward; plain is fine
            _, (hidden, _) = self.lstm(mel40)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / raw.norm(dim=1, keepdim=True).clamp(min=1e-8)

    def power_input(self, power: torch.Tensor) -> torch.Tensor:
        """(B, n_fft/2 + 1, F) power spectra at this encoder's `n_fft` and hop -> (B, F', 40) mel power at a
        10 ms hop (the 40 Slaney bands, the window gain and the time resampling of `encoder_input`)."""
        mel40 = torch.einsum("fm,bft->bmt", self.fb40, power.float() * self.power_scale)
        frames = max(1, int(round(mel40.shape[-1] * self.time_scale)))
        mel40 = nn.functional.interpolate(mel40, size=frames, mode="linear", align_corners=False)
        return mel40.transpose(1, 2)

    @classmethod
    def for_power(cls, sample_rate: int, n_fft: int, hop_length: int) -> MelSpeakerEncoder:
        """An encoder fed power spectra (`power_input`) rather than log-mels."""
        return cls(torch.ones(n_fft // 2 + 1, 1), sample_rate, n_fft, hop_length)


def speaker_consistency_loss(
    encoder: MelSpeakerEncoder, original: torch.Tensor, generated: torch.Tensor
) -> torch.Tensor:
    """1 - cosine between the speaker embeddings of input and output (B, n_mels, F) log-mels."""
    with torch.no_grad():
        target = encoder(original)
    return (1.0 - (encoder(generated) * target).sum(dim=1)).mean()
