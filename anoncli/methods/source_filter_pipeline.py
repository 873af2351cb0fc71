"""The source-filter pipeline of the learned methods (`source_filter`): WORLD analysis -> prosody head and networks -> WORLD.

Per utterance (`anoncli.synthesis.source_filter`, `anoncli.models.prosody`):
WORLD analysis (F0, spectral envelope, aperiodicity on 10 ms frames); the
prosody head, given the utterance's F0 and energy statistics, the drawn
target class and seeded noise, sets an F0 shift and range, an energy range
and a formant warp; the warped envelope's log-mel goes through the method's
networks; WORLD resynthesises with the new F0, the envelope change plus the
energy change, and envelope and aperiodicity warped. The output has the
input's length.

An utterance with no voiced frame (whispered speech, a very short cut) is
transformed all the same, without F0: the head reads the training mean in
place of the missing log-F0 statistics, the envelope and the aperiodicity
are warped and changed, and WORLD resynthesises it unvoiced. A wave too
short for one analysis frame raises AudioError: it is never handed back
unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from anoncli.errors import AnoncliError
from anoncli.methods.base import MethodOptions, MethodOutput
from anoncli.methods.pipeline import Pipeline, pad_to_stride, require_samples
from anoncli.models.prosody import ProsodyHead, apply_prosody, band_centres, prosody_noise, utterance_stats, warp_logmel
from anoncli.synthesis import source_filter
from anoncli.synthesis.mel import denormalize, normalize


class SourceFilterPipeline(Pipeline):
    """Pipeline `source_filter`: WORLD resynthesis with the prosody head (checkpoint module `prosody`) moving
    F0, energy and formants; only `--vocoder source_filter` (or none) is accepted. AnoncliError for another
    --vocoder or a checkpoint without the prosody head."""

    name = "source_filter"

    def __init__(self, method: Any, state: dict, options: MethodOptions):
        super().__init__(method, state, options)
        config = method.model_config
        if options.vocoder not in (None, "source_filter"):
            raise AnoncliError(
                f"--vocoder {options.vocoder}: this {method.name} model moves pitch and energy "
                "and synthesises with the source-filter path only (--vocoder source_filter)"
            )
        missing = [k for k in ("prosody_bounds", "prosody_hidden") if k not in config]
        missing += [] if "prosody" in state.get("models", {}) else ["models.prosody"]
        if missing:
            raise AnoncliError(
                f"{method.checkpoint_path}: a source-filter model without {', '.join(missing)} "
                "(the prosody head): an incomplete checkpoint; retrain or re-export it"
            )
        self.prosody = ProsodyHead(
            len(method.classes), bounds=config["prosody_bounds"], hidden=config["prosody_hidden"]
        )
        self.prosody.load_state_dict(state["models"]["prosody"])
        self.prosody.eval()
        self.vocoder_name = "source_filter"
        self.centres = band_centres(source_filter.envelope_mel(method.sample_rate).filterbank)

    def utterance_params(self, params: dict[str, Any], seed: int) -> dict[str, Any]:
        """The networks' draws plus the prosody head's: a target class and a noise seed, when they drew none."""
        extra = {"target": self.method.draw_target(seed), "noise_seed": seed}
        return {**params, **{k: v for k, v in extra.items() if k not in params}}

    def prosody_target(self, params: dict[str, Any]) -> int:
        """The prosody head's target class index (0 when the utterance drew no target)."""
        return self.method.target_index(params) if "target" in params else 0

    @torch.no_grad()
    def process(self, waves: list[torch.Tensor], params: list[dict[str, Any]]) -> list[MethodOutput]:
        return [MethodOutput(audio=self.process_one(w, p)) for w, p in zip(waves, params)]

    @torch.no_grad()
    def process_one(self, wave: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        """One utterance (T,) -> its anonymised wave (T,) float32 on the CPU; AudioError when it is too short."""
        method = self.method
        wave = wave.to("cpu", torch.float32)
        require_samples(wave, source_filter.min_samples(method.sample_rate), method.sample_rate, "WORLD analysis")
        features = source_filter.analyse(wave, method.sample_rate)
        voiced = torch.from_numpy(features.f0 > 0)
        log_f0 = torch.from_numpy(np.log(np.maximum(features.f0, 1.0)).astype(np.float32))
        energy = torch.from_numpy(source_filter.frame_energy_db(features.envelope))
        stats = utterance_stats(log_f0, voiced, energy)
        if not bool(voiced.any()):  # no F0 evidence: the head reads the training mean in its place
            stats = self.prosody.without_f0(stats)
        label = torch.tensor([self.prosody_target(params)])
        prosody = self.prosody(stats[None], label, prosody_noise(params.get("noise_seed", params.get("seed", 0))))[0]
        new_log_f0, gain_db = apply_prosody(log_f0, voiced, energy, prosody)
        env = source_filter.envelope_logmel(features.envelope, method.sample_rate)
        warped = warp_logmel(env[None], prosody[3:4], self.centres)[0]
        norm, mu, sigma = normalize(warped)
        frames = norm.shape[-1]
        padded = pad_to_stride(norm[None], frames, method.stride)
        result = method.transform(padded.to(method.device), [params])[0, :, :frames].cpu()
        change = denormalize(result, mu, sigma) - denormalize(norm, mu, sigma) + gain_db[None, :] / 20.0
        new_f0 = np.where(features.f0 > 0, np.exp(new_log_f0.numpy().astype(np.float64)), 0.0)
        return source_filter.resynthesize(features, new_f0, change, warp=float(torch.exp(prosody[3])))
