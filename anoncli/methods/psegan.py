"""PSEGAN: a gated, dilated U-Net that moves the emotion to a random target and keeps the speaker."""

from __future__ import annotations

from typing import Any

import torch

from anoncli.methods.learned import LearnedMethod
from anoncli.models.generators import psegan_generator


class PSEGAN(LearnedMethod):
    """PSEGAN: a gated, dilated U-Net conditioned on a randomly drawn target emotion."""

    name = "psegan"

    def build(self, state: dict) -> dict[str, torch.nn.Module]:
        generator = psegan_generator(self.model_config, len(self.classes))
        generator.load_state_dict(state["models"]["generator"])
        return {"generator": generator}

    def network_params(self, seed: int) -> dict[str, Any]:
        return {"target": self.draw_target(seed)}

    def transform(self, norm: torch.Tensor, params: list[dict[str, Any]]) -> torch.Tensor:
        labels = torch.tensor([self.target_index(p) for p in params], device=self.device)
        return self.generate(self.modules["generator"], norm, {"label": labels})
