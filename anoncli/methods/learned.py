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

import torch

from anoncli import modelstore
from anoncli.methods.base import Method, MethodOptions
from anoncli.models.chunking import generate
from anoncli.synthesis import DEFAULT_VOCODER, create_vocoder
from anoncli.synthesis.mel import LogMel, denormalize, normalize

# Utterances whose frame counts differ by at most this factor share a padded batch.
BUCKET_RATIO = 1.25
CHUNK_FRAMES = 1024
CHUNK_OVERLAP = 128


class LearnedMelMethod(Method):
    sample_rate: int | None = 16000

    def __init__(self, options: MethodOptions):
        super().__init__(options)
        self.checkpoint_path, state = modelstore.load_method_checkpoint(self.name, options.checkpoint)
        self.model_config = dict(state["config"])
        self.classes: list[str] = list(state["classes"])
        self.attribute: str = state.get("attribute", "")
        self.sample_rate = int(self.model_config.get("sample_rate", 16000))
        self.modules = self.build(state)
        for module in self.modules.values():
            module.to(self.device).eval()
        self.mel = LogMel(sample_rate=self.sample_rate).to(self.device)
        self.vocoder_name = options.vocoder or DEFAULT_VOCODER
        self.vocoder = create_vocoder(self.vocoder_name, self.sample_rate, str(self.device))
        self.stride = next(iter(self.modules.values())).stride

    # ---- subclasses
    def build(self, state: dict) -> dict[str, torch.nn.Module]:
        raise NotImplementedError

    def transform(self, norm: torch.Tensor, params: list[dict[str, Any]]) -> torch.Tensor:
        """(B, n_mels, F) normalised mels of one bucket -> the generator's output, same shape."""
        raise NotImplementedError

    # ---- shared
    def target_index(self, params: dict[str, Any]) -> int:
        return self.classes.index(params["target"])

    def draw_target(self, seed: int) -> str:
        generator = torch.Generator()
        generator.manual_seed(int(seed) ^ 0x5EED)
        return self.classes[int(torch.randint(0, len(self.classes), (1,), generator=generator))]

    def config(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint_path),
            "attribute": self.attribute,
            "classes": self.classes,
            "model": self.model_config,
            "vocoder": self.vocoder_name,
        }

    def generate(self, module: torch.nn.Module, norm: torch.Tensor, cond: dict) -> torch.Tensor:
        return generate(module, norm, cond, chunk_frames=CHUNK_FRAMES, overlap=CHUNK_OVERLAP)

    @torch.no_grad()
    def process(self, waves: list[torch.Tensor], params: list[dict[str, Any]]) -> list[torch.Tensor]:
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
        return outputs  # type: ignore[return-value]
