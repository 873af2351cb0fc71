"""The STFT log-mel pipeline of the learned methods (`mel`): log-mel -> networks -> vocoder.

Each utterance's log-mel (`anoncli.synthesis.mel.LogMel` at the model's
rate) is normalised per utterance; utterances of similar length are padded
into one batch (`length_buckets`) and run through the method's networks
(long files in overlapping chunks). The networks' *change* of the
normalised mel, denormalised, is added to the unclamped log-mel and turned
back into a waveform by `--vocoder` (default `phase`: the change as a gain
on the original STFT; see docs/vocoders.md). The output has the input's length.
"""

from __future__ import annotations

from typing import Any

import torch

from anoncli.methods.base import MethodOptions, MethodOutput
from anoncli.methods.pipeline import Pipeline, length_buckets, pad_to_stride, require_samples
from anoncli.synthesis import DEFAULT_VOCODER, create_vocoder
from anoncli.synthesis.mel import LogMel, denormalize, normalize


class MelPipeline(Pipeline):
    """Pipeline `mel`: STFT log-mel in, the networks' change vocoded with `--vocoder` (any registered vocoder)."""

    name = "mel"

    def __init__(self, method: Any, state: dict, options: MethodOptions):
        super().__init__(method, state, options)
        self.mel = LogMel(sample_rate=method.sample_rate).to(method.device)
        self.vocoder_name = options.vocoder or DEFAULT_VOCODER
        self.vocoder = create_vocoder(self.vocoder_name, method.sample_rate, str(method.device))

    @torch.no_grad()
    def process(self, waves: list[torch.Tensor], params: list[dict[str, Any]]) -> list[MethodOutput]:
        method = self.method
        for wave in waves:
            require_samples(wave, self.mel.hop_length, method.sample_rate, "log-mel analysis")
        mels = [self.mel(w.to(method.device, torch.float32).unsqueeze(0)).squeeze(0) for w in waves]
        stats = [normalize(m) for m in mels]
        outputs: list[torch.Tensor | None] = [None] * len(waves)
        for bucket in length_buckets([m.shape[-1] for m in mels]):
            longest = max(mels[i].shape[-1] for i in bucket)
            batch = torch.stack(
                [pad_to_stride(stats[i][0].unsqueeze(0), longest, method.stride).squeeze(0) for i in bucket]
            )
            result = method.transform(batch, [params[i] for i in bucket])
            for row, i in enumerate(bucket):
                norm, mu, sigma = stats[i]
                # Apply the generator's *change* to the unclamped mel: normalisation clamps at
                # +-3 sigma, and handing the clamped values to the vocoder would raise quiet bins.
                change = denormalize(result[row, :, : mels[i].shape[-1]], mu, sigma) - denormalize(norm, mu, sigma)
                outputs[i] = self.vocoder.synthesize(mels[i] + change, waves[i]).to(torch.float32)
        return [MethodOutput(audio=output) for output in outputs]
