"""`world_phone`: frame replacement from a pseudo-speaker phone inventory, on compact WORLD features.

The method (`WorldPhone`, `--method world_phone`) and its pipeline
(`WorldPhonePipeline`, registered as `world_phone` in
`anoncli.methods.pipeline.PIPELINES`). Per utterance
(`anoncli.synthesis.phone_inventory`):

1. WORLD analysis into 40 coded envelope coefficients, log-F0 with voicing,
   band aperiodicity and frame level at 5 ms (`anoncli.synthesis.world_features`);
2. phone posteriors (T, 40) of every frame from a small phone classifier
   fed the utterance's own normalised features with ±60 ms of context;
3. a target gender (50/50) and a pseudo-speaker's statistics drawn from the
   utterance's seed (`anoncli.synthesis.world_norm.PseudoSpeakers`, as
   `world_norm` draws them), and `pool_size` training speakers of that
   gender drawn from the same seed;
4. every frame's coded envelope and aperiodicity replaced by the pool's
   mean phone centroids weighted by its posteriors to the power `power`,
   plus `detail` (0-1) times its deviation from the source's own
   realisation of those phones (`replace_frames`);
5. the pseudo-speaker's envelope mean and covariance and log-F0 mean and
   std imposed on the result (`world_norm.impose`; the source's F0 contour
   recoloured); the source's voicing and frame level are kept;
6. WORLD resynthesis of the same length.

With `detail` 0 the source's spectra choose nothing but phone posteriors:
the output's envelopes are the pool's, its statistics the pseudo-speaker's.

The model: `model.safetensors` with `classifier.*` (the MLP), `inventory.*`
(`centroids` (S, 40, 40 + A) float16, `counts` (S, 40), `genders` (S,)) and
`sampler.*` (the world_norm distribution), and `card.json` (method
`world_phone`; config with `synthesis: world_phone`, `hidden`, `power`,
`pool_size`, `detail`, `covariance`, `clip_sigma`, `pool_speakers`; classes = the
genders). Fitted by `anoncli train --method world_phone`; the model shipped
in `anoncli/pretrained/world_phone/` is the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from anoncli.errors import AnoncliError
from anoncli.methods.learned import LearnedMethod
from anoncli.methods.pipeline import require_samples
from anoncli.methods.world_norm import SAMPLER, WorldNormPipeline
from anoncli.methods.world_norm import model_config as world_norm_config
from anoncli.synthesis import world_features
from anoncli.synthesis.phone_inventory import PHONES, PhoneClassifier, PhoneInventory, replace_frames
from anoncli.synthesis.world_norm import CLIP_SIGMA, impose, utterance_stats

CLASSIFIER = "classifier"
INVENTORY = "inventory"
DEFAULT_POOL_SIZE = 4
DEFAULT_POWER = 1.0
DEFAULT_DETAIL = 0.3


@dataclass
class WorldPhoneOptions:
    """`--param` settings (None: the model's): `pool_size` (speakers of the target gender whose phone
    centroids are mixed), `power` (posterior sharpening, > 0), `detail` (the share of the source's
    within-phone detail kept, 0-1: 0 the strongest replacement, 1 only the phones' means replaced)."""

    pool_size: int | None = None
    power: float | None = None
    detail: float | None = None


class WorldPhone(LearnedMethod):
    """Frame replacement from a pseudo-speaker phone inventory; the model is the phone classifier, the
    inventory and the pseudo-speaker distribution (see the module text)."""

    name = "world_phone"
    options_class = WorldPhoneOptions

    def build(self, state: dict) -> dict[str, torch.nn.Module]:
        source = getattr(self, "checkpoint_path", "the model")
        weights = state.get("models", {}).get(CLASSIFIER)
        if not weights:
            raise AnoncliError(f"{source}: no phone classifier in the model (tensors {CLASSIFIER}.*)")
        classifier = PhoneClassifier(int(self.model_config.get("hidden", 256)), len(PHONES))
        try:
            classifier.load_state_dict({k: v.float() for k, v in weights.items()})
        except (RuntimeError, KeyError) as err:
            raise AnoncliError(f"{source}: unusable phone classifier ({str(err).splitlines()[0]})") from None
        return {CLASSIFIER: classifier}


class WorldPhonePipeline(WorldNormPipeline):
    """Pipeline `world_phone`: WORLD features, phone posteriors, the pool's phone centroids, pseudo-speaker
    statistics, WORLD. AnoncliError for a --vocoder, a model without a usable sampler or inventory, or a
    bad `pool_size`/`power`."""

    name = "world_phone"

    def __init__(self, method: Any, state: dict, options):
        super().__init__(method, state, options)
        source = getattr(method, "checkpoint_path", "the model")
        tensors = state.get("models", {}).get(INVENTORY)
        if not tensors:
            raise AnoncliError(f"{source}: no phone inventory in the model (tensors {INVENTORY}.*)")
        try:
            self.inventory = PhoneInventory(
                tensors["centroids"].float().cpu().numpy(),
                tensors["counts"].cpu().numpy(),
                tensors["genders"].cpu().numpy(),
            )
        except (KeyError, ValueError) as err:
            raise AnoncliError(f"{source}: unusable phone inventory ({err})") from None
        config, settings = method.model_config, method.settings
        self.pool_size = int(settings.pool_size or config.get("pool_size", DEFAULT_POOL_SIZE))
        self.power = float(settings.power or config.get("power", DEFAULT_POWER))
        detail = settings.detail if settings.detail is not None else config.get("detail", DEFAULT_DETAIL)
        self.detail = float(detail)
        if self.pool_size < 1 or not self.power > 0 or not 0.0 <= self.detail <= 1.0:
            raise AnoncliError(
                f"--param pool_size={self.pool_size} power={self.power} detail={self.detail}: "
                "expected pool_size >= 1, power > 0 and detail in [0, 1]"
            )
        speakers = list(config.get("pool_speakers") or [])
        self.speakers = speakers if len(speakers) == len(self.inventory.genders) else None

    def utterance_params(self, params: dict[str, Any], seed: int) -> dict[str, Any]:
        """world_norm's target gender and pseudo-speaker seed, plus the pool speakers drawn (manifest)."""
        params = super().utterance_params(params, seed)
        pool = self.inventory.draw_pool(seed, self.method.classes.index(params["target"]), self.pool_size)
        names = [self.speakers[i] for i in pool] if self.speakers else [int(i) for i in pool]
        return {**params, "pool": names}

    @torch.no_grad()
    def process_one(self, wave: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        """One utterance (T,) -> its wave (T,) float32 with every frame replaced; AudioError when shorter
        than a frame."""
        rate = self.method.sample_rate
        wave = wave.to("cpu", torch.float32)
        require_samples(wave, world_features.min_samples(rate), rate, "WORLD analysis")
        features = world_features.analyse(wave.numpy(), rate)
        seed = params["pseudo_seed"]
        gender, target = self.sampler.draw(seed)
        pool = self.inventory.draw_pool(seed, self.method.classes.index(gender), self.pool_size)
        posteriors = self.method.modules[CLASSIFIER].posteriors(features)
        mixed = replace_frames(features, posteriors, self.inventory.pool_centroids(pool), self.power, self.detail)
        out = impose(mixed, utterance_stats(mixed), target, full=self.full)
        return torch.from_numpy(world_features.synthesize(out))


def model_config(
    sample_rate: int = 16000,
    covariance: str = "full",
    clip_sigma: float = CLIP_SIGMA,
    hidden: int = 256,
    power: float = DEFAULT_POWER,
    pool_size: int = DEFAULT_POOL_SIZE,
    pool_speakers: list[str] | None = None,
    detail: float = DEFAULT_DETAIL,
) -> dict:
    """The config a world_phone model declares: world_norm's (`synthesis` now `world_phone`) plus the
    classifier's `hidden` width, the `phones`, the default `power`, `pool_size` and `detail`, and the
    inventory's speakers (`pool_speakers`, in its order). ValueError for an unknown `covariance`."""
    return {
        **world_norm_config(sample_rate, covariance, clip_sigma),
        "synthesis": WorldPhonePipeline.name,
        "hidden": int(hidden),
        "phones": list(PHONES),
        "power": float(power),
        "pool_size": int(pool_size),
        "detail": float(detail),
        "pool_speakers": list(pool_speakers or []),
    }


def save_model(
    tensors: dict[str, torch.Tensor],
    config: dict,
    classes: list[str],
    folder: str | Path,
    card: dict | None = None,
    attribute: str = "gender",
) -> Path:
    """Write a world_phone model: `folder/model.safetensors` (`tensors`, named `module.name`: classifier,
    inventory with float16 centroids, sampler) and `folder/card.json` (`card`'s keys plus method and
    model: `config`, `classes`, `attribute`). Returns the weights' path; OSError when not writable."""
    from anoncli.atomic import atomic_write_json
    from anoncli.models.safetensors_io import save_file

    for needed in (CLASSIFIER, INVENTORY, SAMPLER):
        if not any(k.startswith(needed + ".") for k in tensors):
            raise ValueError(f"no {needed}.* tensors to save")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "model.safetensors"
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, weights)
    atomic_write_json(
        folder / "card.json",
        {
            **(card or {}),
            "method": WorldPhone.name,
            "model": {"config": config, "classes": classes, "attribute": attribute},
        },
    )
    return weights
