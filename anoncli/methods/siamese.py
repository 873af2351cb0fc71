"""Siamese features (Nelus & Martin): one feature vector per utterance instead of audio.

The network was trained (`anoncli train --method siamese`) so its features
separate the utility class (gender) while carrying little speaker identity;
a service trains its gender head on these vectors, an attacker who intercepts
them should not be able to tell the speakers apart.
"""

from __future__ import annotations

from typing import Any

import torch

from anoncli import modelstore
from anoncli.methods.base import Method, MethodOptions
from anoncli.models.siamese_net import SiameseNet


class Siamese(Method):
    name = "siamese"
    output_kind = "features"
    # The service's gender head, and a closed-set speaker-ID attacker within each gender.
    feature_probes = ("utility:gender", "attacker:speaker|gender")
    sample_rate: int | None = 16000

    def __init__(self, options: MethodOptions):
        super().__init__(options)
        self.checkpoint_path, state = modelstore.load_method_checkpoint(self.name, options.checkpoint)
        self.model_config = dict(state["config"])
        self.sample_rate = int(self.model_config["sample_rate"])
        self.net = SiameseNet(self.model_config["groups"], self.model_config["width"], self.sample_rate)
        self.net.load_state_dict(state["net"])
        self.net.to(self.device).eval()
        self.train_speakers = list(state.get("train_speakers", []))
        self.classes = list(state.get("classes", []))

    def config(self) -> dict[str, Any]:
        return {"checkpoint": str(self.checkpoint_path), "loss": self.model_config["loss"],
                "groups": self.model_config["groups"], "width": self.model_config["width"],
                "utility": self.model_config.get("utility"), "classes": self.classes,
                "feature_dim": self.net.feature_dim, "train_speakers": self.train_speakers}

    @torch.no_grad()
    def process(self, waves: list[torch.Tensor], params: list[dict[str, Any]]):
        # One at a time: the time-average makes the vector independent of padding.
        return [self.net(w[None].to(self.device))[0].cpu().numpy() for w in waves]
