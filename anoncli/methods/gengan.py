"""GenGAN (Stoidis & Cavallaro): U-Net with a noise channel that makes the gender ambiguous."""

from __future__ import annotations

from typing import Any

import torch

from anoncli.methods.learned import LearnedMethod
from anoncli.models.generators import gengan_generator, gengan_noise_map


class GenGAN(LearnedMethod):
    """GenGAN (Stoidis & Cavallaro, 2022): a U-Net fed a seeded noise map that makes the gender ambiguous."""

    name = "gengan"

    def build(self, state: dict) -> dict[str, torch.nn.Module]:
        generator = gengan_generator(self.model_config)
        generator.load_state_dict(state["models"]["generator"])
        return {"generator": generator}

    def network_params(self, seed: int) -> dict[str, Any]:
        return {"noise_seed": seed}

    def transform(self, norm: torch.Tensor, params: list[dict[str, Any]]) -> torch.Tensor:
        noise = torch.cat([gengan_noise_map(p["noise_seed"], norm.shape[-1], self.stride) for p in params]).to(
            self.device
        )
        return self.generate(self.modules["generator"], norm, {"noise": noise})
