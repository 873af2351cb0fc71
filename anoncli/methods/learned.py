"""Shared base of the learned audio methods (PCMelGAN, GenGAN, PSEGAN): the model, its networks and its pipeline.

Load a trained checkpoint (`--checkpoint RUN`, the local model store, or the
model shipped in the package), build the method's networks from it, and
hand the audio to the synthesis pipeline the model declares
(`anoncli.methods.pipeline`: `config["synthesis"]` names `mel` or
`source_filter`). The networks change a normalised log-mel (`transform`,
long inputs in overlapping chunks); the pipeline makes that log-mel from a
waveform and a waveform from its change. The per-utterance randomness
(noise seed, target class) comes from `utterance_params`, so it is recorded
in the manifest and reproducible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from anoncli import modelstore
from anoncli.methods.base import Method, MethodOptions, MethodOutput
from anoncli.methods.pipeline import Pipeline, declared_pipeline, pipeline_class
from anoncli.models.chunking import generate

if TYPE_CHECKING:
    from anoncli.corpus.utterance import Utterance

CHUNK_FRAMES = 1024
CHUNK_OVERLAP = 128


def speaker_key(utt: Utterance) -> str:
    """The key a two-pass pipeline pools an utterance's statistics under: its speaker, or the file alone
    (`utt:` and its id) when it has no speaker label."""
    return f"speaker:{utt.speaker}" if utt.speaker else f"utt:{utt.utt_id}"


class LearnedMethod(Method):
    """A trained GAN method: waves at the model's rate (16 kHz) in, anonymised waves of the same length out.

    Subclasses give the networks (`build`, `transform`) and their own
    per-utterance draws (`network_params`); the pipeline the checkpoint
    declares (`self.pipeline`) does analysis and synthesis. Raises
    AnoncliError when the checkpoint is missing, of another method, declares
    an unknown pipeline, or when its pipeline refuses an option (a
    source-filter model given another --vocoder).
    """

    sample_rate: int | None = 16000
    # --param strength=S (0..1): how much of a bounded residual generator's change is applied (pipelines
    # with such a generator only; the others refuse it)
    extra_params = ("strength",)
    uses_checkpoint = True
    uses_vocoder = True  # the pipeline the checkpoint declares says which vocoders it accepts

    def __init__(self, options: MethodOptions, state: dict | None = None, source: str | None = None):
        super().__init__(options)
        if state is None:
            self.checkpoint_path, state = modelstore.load_method_checkpoint(self.name, options.checkpoint)
        else:
            self.checkpoint_path = source or "(in memory)"
        self.model_config = dict(state["config"])
        self.classes: list[str] = list(state["classes"])
        self.attribute: str = state.get("attribute", "")
        # the model's identity for manifests (computed once: config() is recorded on every row)
        self.model_sha256: str | None = state.get("sha256") or modelstore.file_sha256(self.checkpoint_path)
        self.sample_rate = int(self.model_config.get("sample_rate", 16000))
        pipeline = pipeline_class(declared_pipeline(state, str(self.checkpoint_path)), str(self.checkpoint_path))
        # a pipeline that brings its own networks (world_norm with a generator) builds them; else the method
        self.modules = pipeline.networks(state, self.model_config) or self.build(state)
        for module in self.modules.values():
            module.to(self.device).eval()
        self.stride = next(iter(self.modules.values())).stride
        self.pipeline: Pipeline = pipeline(self, state, options)

    @classmethod
    def from_state(cls, state: dict, options: MethodOptions, source: str | None = None) -> LearnedMethod:
        """Build from an already loaded checkpoint state (validation during training, shipped models).

        `state` holds at least `config`, `classes` and `models` (module name -> state dict), optionally
        `attribute` and `sha256`; other keys are ignored. `source` names it in messages and manifests.
        """
        return cls(options, state=state, source=source)

    # ---- subclasses
    def build(self, state: dict) -> dict[str, torch.nn.Module]:
        """The method's networks, named as in the checkpoint's `models`, with their weights loaded from `state`."""
        raise NotImplementedError

    def transform(self, norm: torch.Tensor, params: list[dict[str, Any]]) -> torch.Tensor:
        """(B, n_mels, F) normalised mels of one bucket (F a multiple of `stride`) -> the networks' output, same shape."""
        raise NotImplementedError

    def network_params(self, seed: int) -> dict[str, Any]:
        """The networks' per-utterance draws from the utterance's `seed` (noise seed, target class, ...)."""
        return {}

    # ---- shared
    def utterance_params(self, utt: Utterance) -> dict[str, Any]:
        seed = self.utterance_seed(utt)
        params = self.pipeline.utterance_params(self.network_params(seed), seed)
        if self.pipeline.two_pass:  # the key of the statistics the first pass pooled for this file
            params["speaker"] = speaker_key(utt)
        return params

    @property
    def two_pass(self) -> bool:
        return self.pipeline.two_pass

    def corpus_statistics(self, utterances, progress: bool = True) -> dict | None:
        return self.pipeline.corpus_statistics(list(utterances), progress) if self.pipeline.two_pass else None

    def target_index(self, params: dict[str, Any]) -> int:
        """Index in `classes` of the utterance's drawn target class (`params["target"]`)."""
        return self.classes.index(params["target"])

    def draw_target(self, seed: int) -> str:
        """A target class drawn uniformly from `classes` with a generator seeded from `seed`."""
        generator = torch.Generator()
        generator.manual_seed(int(seed) ^ 0x5EED)
        return self.classes[int(torch.randint(0, len(self.classes), (1,), generator=generator))]

    def config(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint_path),
            "model_sha256": self.model_sha256,
            "attribute": self.attribute,
            "classes": self.classes,
            "model": self.model_config,
            "vocoder": self.pipeline.vocoder_name,
        }

    def generate(self, module: torch.nn.Module, norm: torch.Tensor, cond: dict) -> torch.Tensor:
        """`module` over (B, n_mels, F) normalised mels with conditioning `cond`, in overlapping chunks of CHUNK_FRAMES."""
        return generate(module, norm, cond, chunk_frames=CHUNK_FRAMES, overlap=CHUNK_OVERLAP)

    @torch.no_grad()
    def process(self, waves: list[torch.Tensor], params: list[dict[str, Any]]) -> list[MethodOutput]:
        return self.pipeline.process(waves, params)


# the name trainers and older code import
LearnedMelMethod = LearnedMethod
