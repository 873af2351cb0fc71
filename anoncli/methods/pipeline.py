"""The synthesis pipelines of the learned audio methods, and the registry a model's declaration is read from.

A learned method (GenGAN, PCMelGAN, PSEGAN) is two parts: its networks,
which change a normalised 80-band log-mel (the method module: `build`,
`transform`, its per-utterance draws), and a pipeline around them, which
turns a waveform into that log-mel and the changed log-mel back into a
waveform. The model declares its pipeline: the key `synthesis` of the
checkpoint's (or model card's) `config` (or the state's top level) names one of `PIPELINES`
("mel" when it is absent: checkpoints from before the source-filter models).

* `mel` (`anoncli.methods.mel_pipeline:MelPipeline`): the STFT log-mel,
  vocoded back with `--vocoder` (default `phase`).
* `source_filter` (`anoncli.methods.source_filter_pipeline:SourceFilterPipeline`):
  WORLD analysis, a prosody head moving F0, energy and formants, the
  envelope's log-mel through the networks, WORLD resynthesis.

The pipelines share the length bucketing (`length_buckets`) and the padding
of a mel to the networks' stride (`pad_to_stride`). Neither hands a wave
back unchanged: one too short for an analysis frame raises AudioError
(`require_samples`), so its manifest row is `failed` with the reason.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from anoncli.errors import AnoncliError, AudioError

if TYPE_CHECKING:
    import torch

    from anoncli.methods.base import MethodOptions, MethodOutput

# pipeline name (a model's config["synthesis"]) -> "module:Class"
PIPELINES: dict[str, str] = {
    "mel": "anoncli.methods.mel_pipeline:MelPipeline",
    "source_filter": "anoncli.methods.source_filter_pipeline:SourceFilterPipeline",
    "world_norm": "anoncli.methods.world_norm:WorldNormPipeline",
    "world_phone": "anoncli.methods.world_phone:WorldPhonePipeline",
}
# the pipeline of a checkpoint whose config names none (mel-domain models trained before the source-filter ones)
DEFAULT_PIPELINE = "mel"
# Utterances whose frame counts differ by at most this factor share a padded batch.
BUCKET_RATIO = 1.25


def declared_pipeline(state: dict, source: str = "the model") -> str:
    """The pipeline name a loaded checkpoint state declares: `synthesis` in its `config` (or at its top level,
    as model cards also write it), else DEFAULT_PIPELINE. Raises AnoncliError when the two disagree."""
    named = {str(v) for v in (state.get("synthesis"), (state.get("config") or {}).get("synthesis")) if v}
    if len(named) > 1:
        raise AnoncliError(f"{source}: declares two synthesis pipelines ({' and '.join(sorted(named))})")
    return named.pop() if named else DEFAULT_PIPELINE


def pipeline_class(name: str, source: str = "the model") -> type[Pipeline]:
    """The `Pipeline` subclass registered as `name` (its module imported now).

    Raises AnoncliError naming `source` (the checkpoint) for a name no pipeline has.
    """
    if name not in PIPELINES:
        raise AnoncliError(
            f"{source}: declares the synthesis pipeline {name!r}, which this anoncli does not have "
            f"(known: {', '.join(sorted(PIPELINES))}); update anoncli or retrain the model"
        )
    module_name, class_name = PIPELINES[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def length_buckets(lengths: list[int], ratio: float = BUCKET_RATIO) -> list[list[int]]:
    """Indices grouped into buckets of similar length: sorted by length, a new bucket whenever one is
    more than `ratio` times the bucket's shortest. Every index appears once, shortest buckets first."""
    buckets: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if buckets and lengths[index] <= ratio * lengths[buckets[-1][0]]:
            buckets[-1].append(index)
        else:
            buckets.append([index])
    return buckets


def pad_to_stride(norm: torch.Tensor, frames: int, stride: int) -> torch.Tensor:
    """(..., n_mels, F) with F <= `frames` -> (..., n_mels, ceil(frames / stride) * stride), the last frame repeated."""
    import torch

    target = -(-frames // stride) * stride
    return torch.nn.functional.pad(norm, (0, target - norm.shape[-1]), mode="replicate")


def require_samples(wave: torch.Tensor, minimum: int, sample_rate: int, analysis: str) -> None:
    """Raise AudioError (the file fails with this reason) when `wave` (T,) has fewer than `minimum` samples,
    the least `analysis` needs for one frame: a method must not hand such a file back unchanged."""
    if wave.numel() < minimum:
        raise AudioError(
            f"too short to transform: {wave.numel() / sample_rate * 1000:.1f} ms, "
            f"the {analysis} needs at least {minimum / sample_rate * 1000:.0f} ms"
        )


class Pipeline(ABC):
    """Analysis and synthesis around a learned method's networks: waves in, one `MethodOutput` per wave out.

    Built by the method once its networks are loaded, with the method (its
    `transform`, `stride`, `classes`, `sample_rate`, `device`), the loaded
    checkpoint `state` (a pipeline may load its own modules from it) and the
    run's options. Raises AnoncliError for an option the pipeline refuses.
    """

    name: ClassVar[str]

    # whether the pipeline reads --param strength (a residual generator's share); the others refuse it
    takes_strength: ClassVar[bool] = False

    def __init__(self, method: Any, state: dict, options: MethodOptions):
        self.method = method
        self.vocoder_name: str = ""
        self.strength = 1.0
        given = options.extra.get("strength")
        if given is not None:
            if not self.takes_strength:
                raise AnoncliError(
                    f"--param strength: the {self.name} pipeline of this {method.name} model has no residual "
                    "generator to scale (a model trained with --method gengan-world, pcmelgan-world or psegan-world has)"
                )
            try:
                self.strength = float(given)
            except (TypeError, ValueError):
                raise AnoncliError(f"--param strength={given}: expected a number in [0, 1]") from None
            if not 0.0 <= self.strength <= 1.0:
                raise AnoncliError(f"--param strength={given}: expected a number in [0, 1]")

    # a pipeline whose transform needs statistics pooled over each speaker's utterances in the corpus
    two_pass: ClassVar[bool] = False

    def corpus_statistics(self, utterances: list, progress: bool = True) -> dict | None:
        """The first pass of a two-pass pipeline over the whole corpus (see `Method.corpus_statistics`); None."""
        return None

    @classmethod
    def networks(cls, state: dict, config: dict) -> dict[str, torch.nn.Module] | None:
        """The networks of a model whose pipeline builds them itself (weights loaded from `state`), or None:
        the method's `build` makes them (the default)."""
        return None

    def utterance_params(self, params: dict[str, Any], seed: int) -> dict[str, Any]:
        """The networks' per-utterance draws `params` plus what this pipeline draws from `seed` (none by default)."""
        return params

    @abstractmethod
    def process(self, waves: list[torch.Tensor], params: list[dict[str, Any]]) -> list[MethodOutput]:
        """A batch of (T,) float waves at the method's rate -> one MethodOutput with audio (T,) each, in order."""
