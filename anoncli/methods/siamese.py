"""Siamese features (Nelus & Martin): one feature vector per utterance instead of audio.

The network was trained (`anoncli train --method siamese`; a default model
ships in anoncli/pretrained/siamese) so its features separate the utility
class (gender) while carrying little speaker identity;
a service trains its gender head on these vectors, an attacker who intercepts
them should not be able to tell the speakers apart.
"""

from __future__ import annotations

from typing import Any

import torch

from anoncli import modelstore
from anoncli.errors import AnoncliError
from anoncli.methods.base import Method, MethodOptions, MethodOutput
from anoncli.models.siamese_net import SiameseNet, add_feature_noise


def module_state(state: dict, name: str, path: object = "checkpoint") -> dict:
    """Network `name`'s state dict from a model loaded by `modelstore.load_model` (`state["models"][name]`:
    a training checkpoint of any format, or a shipped model). Raises AnoncliError when it has none."""
    models = state.get("models") or {}
    if name not in models:
        raise AnoncliError(f"{path}: holds no {name!r} network (it has {', '.join(sorted(models)) or 'none'})")
    return models[name]


class Siamese(Method):
    """Siamese features (Nelus & Martin): one feature vector per 16 kHz utterance, written as .npy instead of audio.

    Raises AnoncliError for a missing or foreign checkpoint.
    """

    name = "siamese"
    uses_checkpoint = True
    output_kind = "features"
    # Default labels of the evaluation: the service's gender head, and a closed-set speaker-ID
    # attacker within each gender (`anoncli evaluate --utility/--private` choose others).
    utility_label = "gender"
    private_label = "speaker"
    private_within = "gender"
    extra_params = ("noise",)
    feature_probes = ("utility:gender", "attacker:speaker|gender")
    sample_rate: int | None = 16000

    def __init__(self, options: MethodOptions):
        super().__init__(options)
        self.checkpoint_path, state = modelstore.load_method_checkpoint(self.name, options.checkpoint)
        c = self.model_config = dict(state["config"])
        self.sample_rate = int(c["sample_rate"])
        self.net = SiameseNet(
            c["groups"],
            c["width"],
            self.sample_rate,
            norm=c.get("norm", "instance"),
            bottleneck=int(c.get("bottleneck", 0)),
        )
        self.net.load_state_dict(module_state(state, "net", self.checkpoint_path))
        self.net.to(self.device).eval()
        # speakers the extractor saw (training and model selection): the evaluation leaves them out
        self.train_speakers = list(state.get("train_speakers") or c.get("train_speakers") or [])
        self.classes = list(state.get("classes", []))
        # std of the Gaussian noise on every released vector (the model's, or --param noise=S)
        self.noise = float(options.extra.get("noise", c.get("noise", 0.0)))

    def utterance_params(self, utt) -> dict[str, Any]:
        return {"noise_seed": self.utterance_seed(utt)} if self.noise > 0 else {}

    def config(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint_path),
            "loss": self.model_config["loss"],
            "groups": self.model_config["groups"],
            "width": self.model_config["width"],
            "norm": self.model_config.get("norm", "instance"),
            "bottleneck": self.model_config.get("bottleneck", 0),
            "noise": self.noise,
            "utility": self.model_config.get("utility"),
            "classes": self.classes,
            "feature_dim": self.net.feature_dim,
            "train_speakers": self.train_speakers,
        }

    @torch.no_grad()
    def process(self, waves: list[torch.Tensor], params: list[dict[str, Any]]) -> list[MethodOutput]:
        # One at a time: the time-average makes the vector independent of padding.
        return [
            MethodOutput(
                features=add_feature_noise(
                    self.net(w[None].to(self.device))[0].cpu(), self.noise, p.get("noise_seed", 0)
                ).numpy()
            )
            for w, p in zip(waves, params)
        ]
