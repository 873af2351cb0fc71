"""The mel front end and vocoder the learned methods use, behind one small adapter.

Everything mel-related comes from `anoncli.synthesis` (the project's single
definition of the log-mel); this module only adds what the GAN methods need
on top: per-utterance normalisation for a batch, frame padding to the U-Net
stride, and a vocoder factory that falls back to phase-preserving
resynthesis while `anoncli.synthesis.create_vocoder` is not available.
"""

from __future__ import annotations

import torch

from anoncli.synthesis.mel import LogMel, denormalize, normalize

__all__ = ["LogMel", "normalize", "denormalize", "make_vocoder", "default_vocoder_name", "pad_frames"]


def default_vocoder_name() -> str:
    try:
        from anoncli.synthesis import DEFAULT_VOCODER  # type: ignore[attr-defined]

        return str(DEFAULT_VOCODER)
    except ImportError:
        return "phase"


def make_vocoder(name: str | None, sample_rate: int, device: str | torch.device = "cpu", checkpoint: str | None = None):
    """A vocoder with `synthesize(new_logmel (80, F), original_wave (T,)) -> (T,)`."""
    try:
        from anoncli.synthesis import create_vocoder  # type: ignore[attr-defined]
    except ImportError:
        create_vocoder = None
    if create_vocoder is not None:
        return create_vocoder(name or default_vocoder_name(), sample_rate, str(device), checkpoint=checkpoint)
    if name not in (None, "phase"):
        from anoncli.errors import AnoncliError

        raise AnoncliError(f"--vocoder {name}: not available in this installation (only 'phase')")
    from anoncli.synthesis.phase import PhaseVocoder

    return PhaseVocoder(sample_rate, str(device))


def pad_frames(mel: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int]:
    """Pad the last (frame) axis to a multiple of the U-Net stride by edge replication; return it and the original length."""
    frames = mel.shape[-1]
    target = -(-frames // multiple) * multiple
    if target == frames:
        return mel, frames
    pad = target - frames
    # replicate padding needs a 3-D view at least
    shape = mel.shape
    flat = mel.reshape(-1, shape[-2], shape[-1]) if mel.dim() != 3 else mel
    padded = torch.nn.functional.pad(flat, (0, pad), mode="replicate")
    return padded.reshape(*shape[:-1], target), frames
