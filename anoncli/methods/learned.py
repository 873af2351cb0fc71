"""Shared base of the mel-domain learned methods (PCMelGAN, GenGAN, PSEGAN).

Load a trained checkpoint (`--checkpoint RUN` or the local model store),
compute each utterance's log-mel at the model's working rate, normalise it
per utterance, run the generator(s) on length buckets (long files in
overlapping chunks), undo the normalisation and turn the new mel back into a
waveform with the chosen vocoder (`--vocoder`, default training-free).
The per-utterance randomness (noise seed, target class) comes from
`utterance_params`, so it is recorded in the manifest and reproducible.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from anoncli import modelstore
from anoncli.errors import AnoncliError
from anoncli.methods.base import Method, MethodOptions, MethodOutput
from anoncli.models.chunking import generate
from anoncli.synthesis import DEFAULT_VOCODER, create_vocoder
from anoncli.models.prosody import ProsodyHead, apply_prosody, band_centres, prosody_noise, utterance_stats, warp_logmel
from anoncli.synthesis import source_filter
from anoncli.synthesis.mel import LogMel, denormalize, normalize

# Utterances whose frame counts differ by at most this factor share a padded batch.
BUCKET_RATIO = 1.25
CHUNK_FRAMES = 1024
CHUNK_OVERLAP = 128


class LearnedMelMethod(Method):
    """A trained mel-domain method: 16 kHz (or the model's rate) waves in, anonymised waves of the same length out.

    Raises AnoncliError when the checkpoint is missing or of another method, or
    when a source-filter model is given another --vocoder.
    """

    sample_rate: int | None = 16000

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
        self.source_filter = self.model_config.get("synthesis") == "source_filter"
        self.modules = self.build(state)
        if self.source_filter:
            self.prosody = ProsodyHead(len(self.classes), bounds=self.model_config["prosody_bounds"],
                                       hidden=self.model_config["prosody_hidden"])
            self.prosody.load_state_dict(state["models"]["prosody"])
            self.prosody.eval()
        for module in self.modules.values():
            module.to(self.device).eval()
        self.mel = LogMel(sample_rate=self.sample_rate).to(self.device)
        self.stride = next(iter(self.modules.values())).stride
        if self.source_filter:
            if options.vocoder not in (None, "source_filter"):
                raise AnoncliError(f"--vocoder {options.vocoder}: this {self.name} model moves pitch and energy "
                                   "and synthesises with the source-filter path only (--vocoder source_filter)")
            self.vocoder_name = "source_filter"
            self.centres = band_centres(source_filter.envelope_mel(self.sample_rate).filterbank)
        else:
            self.vocoder_name = options.vocoder or DEFAULT_VOCODER
            self.vocoder = create_vocoder(self.vocoder_name, self.sample_rate, str(self.device))

    @classmethod
    def from_state(cls, state: dict, options: MethodOptions, source: str | None = None) -> "LearnedMelMethod":
        """Build from an already loaded checkpoint state (validation during training, shipped models)."""
        return cls(options, state=state, source=source)

    # ---- subclasses
    def build(self, state: dict) -> dict[str, torch.nn.Module]:
        """The method's networks, named as in the checkpoint's `models`, with their weights loaded from `state`."""
        raise NotImplementedError

    def transform(self, norm: torch.Tensor, params: list[dict[str, Any]]) -> torch.Tensor:
        """(B, n_mels, F) normalised mels of one bucket -> the generator's output, same shape."""
        raise NotImplementedError

    # ---- shared
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
            "vocoder": self.vocoder_name,
        }

    def generate(self, module: torch.nn.Module, norm: torch.Tensor, cond: dict) -> torch.Tensor:
        """`module` over (B, n_mels, F) normalised mels with conditioning `cond`, in overlapping chunks of 1024 frames."""
        return generate(module, norm, cond, chunk_frames=CHUNK_FRAMES, overlap=CHUNK_OVERLAP)

    @torch.no_grad()
    def process(self, waves: list[torch.Tensor], params: list[dict[str, Any]]) -> list[MethodOutput]:
        if self.source_filter:
            return [MethodOutput(audio=self.process_source_filter(w, p)) for w, p in zip(waves, params)]
        mels = [self.mel(w.to(self.device, torch.float32).unsqueeze(0)).squeeze(0) for w in waves]
        stats = [normalize(m) for m in mels]
        outputs: list[torch.Tensor | None] = [None] * len(waves)
        order = sorted(range(len(waves)), key=lambda i: mels[i].shape[-1])
        buckets: list[list[int]] = []
        for index in order:
            if buckets and mels[index].shape[-1] <= BUCKET_RATIO * mels[buckets[-1][0]].shape[-1]:
                buckets[-1].append(index)
            else:
                buckets.append([index])
        for bucket in buckets:
            longest = max(mels[i].shape[-1] for i in bucket)
            target = -(-longest // self.stride) * self.stride
            batch = torch.stack([
                torch.nn.functional.pad(stats[i][0].unsqueeze(0), (0, target - mels[i].shape[-1]), mode="replicate").squeeze(0)
                for i in bucket
            ])
            result = self.transform(batch, [params[i] for i in bucket])
            for row, i in enumerate(bucket):
                norm, mu, sigma = stats[i]
                # Apply the generator's *change* to the unclamped mel: normalisation clamps at
                # +-3 sigma, and handing the clamped values to the vocoder would raise quiet bins.
                change = denormalize(result[row, :, : mels[i].shape[-1]], mu, sigma) - denormalize(norm, mu, sigma)
                new_logmel = mels[i] + change
                outputs[i] = self.vocoder.synthesize(new_logmel, waves[i]).to(torch.float32)
        return [MethodOutput(audio=output) for output in outputs]

    # ---- source-filter models: the generator moves envelope, F0 and energy (WORLD resynthesis)
    def prosody_target(self, params: dict[str, Any]) -> int:
        """The prosody head's target class index (0 when the utterance drew no target)."""
        return self.target_index(params) if "target" in params else 0

    @torch.no_grad()
    def process_source_filter(self, wave: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        """One utterance: WORLD analysis -> prosody head -> warp + envelope U-Net -> resynthesis (T,)."""
        features = source_filter.analyse(wave.to("cpu", torch.float32), self.sample_rate)
        voiced = torch.from_numpy(features.f0 > 0)
        if not bool(voiced.any()):     # nothing voiced (noise, silence): the envelope path alone would be a no-op
            return wave.to("cpu", torch.float32)
        log_f0 = torch.from_numpy(np.log(np.maximum(features.f0, 1.0)).astype(np.float32))
        energy = torch.from_numpy(source_filter.frame_energy_db(features.envelope))
        stats = utterance_stats(log_f0, voiced, energy)
        label = torch.tensor([self.prosody_target(params)])
        prosody = self.prosody(stats[None], label, prosody_noise(params.get("noise_seed", params.get("seed", 0))))[0]
        new_log_f0, gain_db = apply_prosody(log_f0, voiced, energy, prosody)
        env = source_filter.envelope_logmel(features.envelope, self.sample_rate)
        warped = warp_logmel(env[None], prosody[3:4], self.centres)[0]
        norm, mu, sigma = normalize(warped)
        frames = norm.shape[-1]
        target = -(-frames // self.stride) * self.stride
        padded = torch.nn.functional.pad(norm[None], (0, target - frames), mode="replicate")
        result = self.transform(padded.to(self.device), [params])[0, :, :frames].cpu()
        change = denormalize(result, mu, sigma) - denormalize(norm, mu, sigma) + gain_db[None, :] / 20.0
        new_f0 = np.where(features.f0 > 0, np.exp(new_log_f0.numpy().astype(np.float64)), 0.0)
        return source_filter.resynthesize(features, new_f0, change, warp=float(torch.exp(prosody[3])))
