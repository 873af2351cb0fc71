"""RDAL-M: speech-suppressed audio (a learned mask on the mixture STFT) and/or privacy-preserving embeddings.

`--param emit=audio` (default) writes mask × mixture STFT resynthesised with
the mixture's phase (the mask is computed on the mixture brought to
`REFERENCE_DBFS`, the level the shipped model was trained at, so it does not
depend on the input's level; the output keeps the input's level);
`emit=features` writes the 64-d event embedding trained
against a speech-presence adversary; `emit=both` writes both (the manifest
then has output_path for the audio and features_path for the embedding).
"""

from __future__ import annotations

from typing import Any

import torch

from anoncli import modelstore
from anoncli.errors import AnoncliError
from anoncli.methods.base import Method, MethodOptions, MethodOutput
from anoncli.methods.siamese import module_state
from anoncli.models.rdalm_nets import MAX_LEVEL_GAIN_DB, REFERENCE_DBFS, RdalmPipeline

EMIT_CHOICES = ("audio", "features", "both")


class Rdalm(Method):
    """RDAL-M: speech-suppressed 16 kHz audio (learned STFT mask), event embeddings (64-d by default), or both (`--param emit`).

    Raises AnoncliError for an unknown `emit` or a missing or foreign checkpoint.
    """

    name = "rdalm"
    uses_checkpoint = True
    output_kind = "audio"
    sample_rate: int | None = 16000
    # Default labels of the evaluation: the service's event classifier, a speech-presence attacker
    # (`speech`, yes/no) on the embeddings; on the masked audio the same attacker (and on the unmasked
    # input, for comparison) and the separation SDR.
    utility_label = "event"
    private_label = "speech"
    private_within = None
    extra_params = ("emit",)
    feature_probes = ("utility:event", "attacker:speech_present")
    audio_probes = ("attacker-audio:speech_present", "attacker-unmasked:speech_present", "sdr")

    def __init__(self, options: MethodOptions):
        super().__init__(options)
        self.emit = (options.extra.get("emit") or "audio").lower()
        if self.emit not in EMIT_CHOICES:
            raise AnoncliError(f"--param emit={self.emit}: expected one of {', '.join(EMIT_CHOICES)}")
        # The engine reads output_kind per instance: features-only runs write .npy, no audio.
        self.output_kind = "features" if self.emit == "features" else "audio"
        self.checkpoint_path, state = modelstore.load_method_checkpoint(self.name, options.checkpoint)
        c = self.model_config = dict(state["config"])
        self.classes = list(state["classes"])
        self.sample_rate = int(c["sample_rate"])
        self.pipeline = RdalmPipeline(
            c["sample_rate"],
            c["n_fft"],
            c["hop"],
            c["unet_width"],
            c["extractor_width"],
            c["embedding"],
            len(self.classes),
            bool(c.get("feature_gain", False)),
        )
        self.pipeline.load_state_dict(module_state(state, "pipeline"))
        self.pipeline.to(self.device).eval()

    def config(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint_path),
            "emit": self.emit,
            "classes": self.classes,
            "adversary": self.model_config.get("adversary"),
            "n_fft": self.model_config["n_fft"],
            "hop": self.model_config["hop"],
            "embedding": self.model_config["embedding"],
            "mask_input_level_dbfs": REFERENCE_DBFS,
            "mask_input_max_gain_db": MAX_LEVEL_GAIN_DB,
        }

    @torch.no_grad()
    def process(self, waves: list[torch.Tensor], params: list[dict[str, Any]]) -> list[MethodOutput]:
        out = []
        for wave in waves:
            wave = wave.to(self.device, torch.float32)
            audio = self.pipeline.suppress(wave).cpu() if self.emit != "features" else None
            features = self.pipeline.embed(wave).cpu().numpy() if self.emit != "audio" else None
            out.append(MethodOutput(audio=audio, features=features))
        return out
