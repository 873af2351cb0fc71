"""Mel -> waveform: the vocoder registry shared by every mel-domain method.

`create_vocoder(name, sample_rate)` returns an object with
`synthesize(new_logmel (n_mels, F), original_wave (T,)) -> (T,)`; the log-mel
convention is `anoncli.synthesis.mel.LogMel` (see its docstring).
Backends (see docs/vocoders.md for the measured comparison):

* phase      - the mel change as a gain on the original STFT, original phase kept
* griffinlim - Griffin-Lim from the mel alone
* world      - WORLD (pyworld) with the envelope changed; can move F0
* melgan     - a MelGAN generator (needs a checkpoint)
* source_filter - WORLD at 10 ms with DIO + StoneMask; the learned source-filter models move F0 and energy too
"""

from __future__ import annotations

import importlib
from typing import Any

from anoncli.errors import AnoncliError
from anoncli.synthesis.base import Vocoder
from anoncli.synthesis.mel import LogMel, denormalize, normalize

# name -> "module:Class"; a new backend needs one module and one line here.
VOCODERS: dict[str, str] = {
    "phase": "anoncli.synthesis.phase:PhaseVocoder",
    "griffinlim": "anoncli.synthesis.griffinlim:GriffinLimVocoder",
    "world": "anoncli.synthesis.world:WorldVocoder",
    "melgan": "anoncli.synthesis.neural:MelGANVocoder",
    "source_filter": "anoncli.synthesis.source_filter:SourceFilterVocoder",
}

# Chosen by measurement (copy-synthesis STOI and speed, docs/vocoders.md).
DEFAULT_VOCODER = "phase"

__all__ = [
    "DEFAULT_VOCODER",
    "LogMel",
    "VOCODERS",
    "Vocoder",
    "create_vocoder",
    "denormalize",
    "normalize",
    "vocoder_names",
]


def vocoder_names() -> list[str]:
    """Registered vocoder names, sorted."""
    return sorted(VOCODERS)


def create_vocoder(
    name: str | None, sample_rate: int, device: str = "cpu", checkpoint: str | None = None, **options: Any
) -> Vocoder:
    """Build a vocoder by name (None -> DEFAULT_VOCODER); options go to the backend (e.g. n_iter, f0_factor)."""
    name = name or DEFAULT_VOCODER
    if str(device) == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if name not in VOCODERS:
        raise AnoncliError(f"unknown vocoder {name!r} (choose from: {', '.join(vocoder_names())})")
    module_name, class_name = VOCODERS[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(sample_rate, device=device, checkpoint=checkpoint, **options)
