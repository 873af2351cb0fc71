"""PCMelGAN (Ericsson et al.): a filter removes the attribute, a generator draws a random new one."""

from __future__ import annotations

from typing import Any

import torch

from anoncli.methods.learned import LearnedMethod
from anoncli.models.generators import pcmelgan_filter, pcmelgan_generator, pcmelgan_z


class PCMelGAN(LearnedMethod):
    """PCMelGAN (Ericsson et al., 2020): a filter network removes the attribute, a generator draws a random target value."""

    name = "pcmelgan"

    def build(self, state: dict) -> dict[str, torch.nn.Module]:
        modules = {
            "filter": pcmelgan_filter(self.model_config),
            "generator": pcmelgan_generator(self.model_config, len(self.classes)),
        }
        for name, module in modules.items():
            module.load_state_dict(state["models"][name])
        return modules

    def network_params(self, seed: int) -> dict[str, Any]:
        return {"noise_seed": seed, "target": self.draw_target(seed)}

    def transform(self, norm: torch.Tensor, params: list[dict[str, Any]]) -> torch.Tensor:
        z_filter = torch.cat([pcmelgan_z(p["noise_seed"]) for p in params]).to(self.device)
        z_gen = torch.cat([pcmelgan_z(p["noise_seed"] + 1) for p in params]).to(self.device)
        labels = torch.tensor([self.target_index(p) for p in params], device=self.device)
        filtered = self.generate(self.modules["filter"], norm, {"z": z_filter})
        return self.generate(self.modules["generator"], filtered, {"z": z_gen, "label": labels})
