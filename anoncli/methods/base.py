"""The one small interface every anonymization method implements.

The job engine decodes and resamples audio to `sample_rate`, asks the method
for each utterance's parameters (`utterance_params`, recorded in the manifest
so a result can be reproduced and audited), then calls `process` on a batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from anoncli.corpus.utterance import Utterance
from anoncli.seeding import derive_seed

if TYPE_CHECKING:  # torch is imported when a method is built, not when the registry is read
    import torch


@dataclass
class MethodOptions:
    """Options a user can set on the command line; each method reads the ones it knows."""

    device: str = "cpu"
    seed: int = 0
    per_speaker: bool = False
    alpha: float | None = None
    checkpoint: str | None = None
    vocoder: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


class Method(ABC):
    """An anonymization method: a batch of waveforms in, a batch of outputs out."""

    name: ClassVar[str]
    # "audio": process() returns waveforms at `sample_rate`;
    # "features": process() returns one 1-D or 2-D float array per utterance.
    output_kind: ClassVar[str] = "audio"
    # Working sample rate; None means "the input's own rate".
    sample_rate: int | None = 16000
    # Whether `anonymize` adds per-utterance scores (linkability, STOI, F0 r) unless told otherwise:
    # true only where scoring costs under a fifth of the method's own time (measured per method).
    score_by_default: ClassVar[bool] = False
    # The representation-level probes `evaluate` runs on this method's output (their names are
    # documented in evaluation/feature_probes.py): on the feature vectors it wrote, and on its audio.
    feature_probes: ClassVar[tuple[str, ...]] = ()
    audio_probes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: MethodOptions):
        self.options = options
        import torch

        self.device = torch.device(options.device)

    def utterance_seed(self, utt: Utterance) -> int:
        """Per-utterance seed, or per-speaker with --per-speaker (same voice for one speaker)."""
        if self.options.per_speaker and utt.speaker:
            return derive_seed(self.options.seed, f"speaker:{utt.speaker}")
        return derive_seed(self.options.seed, f"utt:{utt.utt_id}")

    def utterance_params(self, utt: Utterance) -> dict[str, Any]:
        """JSON-serialisable parameters for one utterance (drawn from its seed)."""
        return {}

    def config(self) -> dict[str, Any]:
        """Method-level settings, stored in the manifest metadata and run.json."""
        return {}

    @abstractmethod
    def process(self, waves: list[torch.Tensor], params: list[dict[str, Any]]) -> list[torch.Tensor]:
        """Transform a batch; waves are 1-D float32 tensors on `self.device`."""
