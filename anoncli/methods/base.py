"""The one small interface every anonymization method implements.

The job engine decodes and resamples audio to `sample_rate`, asks the method
for each utterance's parameters (`utterance_params`, recorded in the manifest
so a result can be reproduced and audited), then calls `process` on a batch,
which returns one `MethodOutput` (audio, features, or both) per utterance.

Settings that only one method knows (McAdams' alpha, its backend, ...) live in
that method's own options dataclass (`Method.options_class`), read from the
`--param KEY=VALUE` pairs in `MethodOptions.extra`; `MethodOptions` holds only
what the engine itself passes to every method.

A method that works on numpy arrays (`tensor_inputs = False`, e.g. McAdams'
compiled CPU kernel) gets numpy arrays from the worker, and the run never
imports torch: the lean CPU path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from anoncli.errors import AnoncliError
from anoncli.params import from_params
from anoncli.seeding import derive_seed

if TYPE_CHECKING:  # neither is needed to read the registry or to run a lean (numpy) method
    import torch

    from anoncli.corpus.utterance import Utterance


@dataclass
class MethodOptions:
    """What the engine hands every method: device, seed, per-speaker draws, model choice, and `--param` pairs.

    `extra` holds the `--param KEY=VALUE` pairs (and `--alpha`, stored as
    `extra["alpha"]`); each method reads the ones its `options_class` declares.
    """

    device: str = "cpu"
    seed: int = 0
    per_speaker: bool = False
    checkpoint: str | None = None
    vocoder: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # a two-pass method's corpus statistics (`Method.corpus_statistics`), as the JSON file the engine wrote
    corpus_statistics: str | None = None


@dataclass(frozen=True)
class MethodOutput:
    """One utterance's result of `Method.process`: audio, features, or both.

    audio: 1-D float waveform at the method's `sample_rate` (or the input's
    rate when that is None), nominally in [-1, 1]: a numpy array or a torch
    tensor (any device). features: a 1-D or 2-D float array (numpy or torch),
    written as float32 .npy. At least one of the two is set (ValueError otherwise).
    """

    audio: Any = None
    features: Any = None

    def __post_init__(self) -> None:
        if self.audio is None and self.features is None:
            raise ValueError("a method output needs audio, features or both")


def options_from_params(options_class: type, params: Mapping[str, Any]) -> Any:
    """An instance of the dataclass `options_class` from `--param` pairs: each field it declares, converted
    by its type hint (`anoncli.params`, the converter trainers use too).

    Keys the dataclass does not declare are left to the method (and ignored
    here); a value that does not convert raises AnoncliError naming it.
    """
    return from_params(options_class, params)


class Method(ABC):
    """An anonymization method: a batch of waveforms in, one `MethodOutput` per waveform out."""

    name: ClassVar[str]
    # "audio": its outputs carry audio at `sample_rate`; "features": feature arrays only.
    output_kind: ClassVar[str] = "audio"
    # Working sample rate; None means "the input's own rate".
    sample_rate: int | None = 16000
    # The method's own settings (a dataclass read from --param pairs by `options_from_params`), or None.
    options_class: ClassVar[type | None] = None
    # --param keys a method reads itself (besides options_class's fields); any other key is refused.
    extra_params: ClassVar[tuple[str, ...]] = ()
    # Whether the method reads `MethodOptions.checkpoint` (a trained model) and `.vocoder`: the command
    # line refuses --checkpoint or --vocoder for a method that would ignore them.
    uses_checkpoint: ClassVar[bool] = False
    uses_vocoder: ClassVar[bool] = False
    # True for a control that keeps every voice by design (identity: what decoding and encoding alone
    # cost), not an anonymization: `inspect --check` counts its outputs that keep the voice apart.
    control: ClassVar[bool] = False
    # True: `process` takes torch tensors on `self.device`; False: numpy float32 arrays (no torch needed).
    tensor_inputs: bool = True
    # The representation-level probes `evaluate` runs on this method's output (their names are
    # documented in evaluation/feature_probes.py): on the feature vectors it wrote, and on its audio.
    feature_probes: ClassVar[tuple[str, ...]] = ()
    audio_probes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: MethodOptions):
        self.options = options
        known = self.param_names()
        unknown = sorted(set(options.extra) - set(known))
        if unknown:  # a misspelt setting must not be silently ignored
            raise AnoncliError(
                f"--param {unknown[0]}: unknown setting for {self.name} "
                f"(known: {', '.join(known) if known else 'none'})"
            )
        self.settings = options_from_params(self.options_class, options.extra) if self.options_class else None

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        """The `--param` keys this method accepts: its options_class's fields and its extra_params."""
        declared = tuple(f.name for f in fields(cls.options_class)) if cls.options_class else ()
        return declared + tuple(k for k in cls.extra_params if k not in declared)

    @cached_property
    def device(self) -> torch.device:
        """The torch device of `options.device` (imports torch on first use)."""
        import torch

        return torch.device(self.options.device)

    @property
    def device_type(self) -> str:
        """ "cpu", "cuda", ...: the device's kind, without importing torch."""
        return str(self.options.device).split(":", 1)[0]

    def prepare(self) -> None:  # noqa: B027 (a hook: most methods need nothing)
        """Load what `process` needs and construction deferred (compiled kernels, ...); idempotent.

        Workers call it once before their first batch; building a method to
        check its options (the engine does, before any work) stays cheap.
        """

    @property
    def two_pass(self) -> bool:
        """Whether the method needs `corpus_statistics` over the whole corpus before it processes a file."""
        return False

    def corpus_statistics(self, utterances: Sequence[Utterance], progress: bool = True) -> dict | None:
        """A two-pass method's first pass: statistics over all of `utterances` (the whole corpus), as a
        JSON-serialisable dict that the engine writes to a file and hands back to every worker through
        `MethodOptions.corpus_statistics` (the path). None (the default): the method needs none."""
        return None

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
    def process(self, waves: Sequence[Any], params: list[dict[str, Any]]) -> list[MethodOutput]:
        """Transform a batch: one `MethodOutput` per wave, in order.

        waves: 1-D float32 signals at `sample_rate`, torch tensors on
        `self.device` when `tensor_inputs`, else numpy arrays (a method with
        `tensor_inputs = False` also accepts tensors). params: one
        `utterance_params` dict per wave. Raises on a bad batch; the worker
        then retries the members one by one so that only the culprit fails.
        """
