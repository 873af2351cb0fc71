"""`world_norm`: explicit pseudo-speaker normalisation on compact WORLD features (training-free front end).

The method (`WorldNorm`, `--method world_norm`) and its pipeline
(`WorldNormPipeline`, registered as `world_norm` in
`anoncli.methods.pipeline.PIPELINES`). Per utterance: WORLD analysis into
40 coded envelope coefficients, log-F0 with voicing, band aperiodicity and
frame level at 5 ms (`anoncli.synthesis.world_features`); the utterance's
envelope's mean and covariance (a model whose config says `covariance:
diagonal`: mean and std) and its log-F0 mean and std replaced by those of a pseudo-speaker drawn
from the utterance's seed (`anoncli.synthesis.world_norm.PseudoSpeakers`,
target gender 50/50, independent of the source); the residual slot (the
networks' place, `transform`); WORLD resynthesis of the same length.

The model is the fitted pseudo-speaker distribution: `model.safetensors`
(tensors `sampler.means` (G, 82), `sampler.chols` (G, 82, 82),
`sampler.speakers` (G,), `sampler.corrs` (G, 40, 40)) and `card.json` (method `world_norm`, config
(`model_config`) with `synthesis: world_norm`, `covariance` and `clip_sigma`, classes = the genders),
written by `save_model`. `anoncli train --method world_norm` fits one
(`anoncli.training.world_norm`: its run folder's checkpoint holds the same
tensors and config, and the run also gets the `model.safetensors` form); it
loads with `--checkpoint RUN`, `--checkpoint DIR` (a folder holding
`model.safetensors` and `card.json`) or the file itself, and the model
shipped in `anoncli/pretrained/world_norm/` is the default. The residual slot is
the identity: a generator that learns a bounded residual on the normalised
features (zero-initialised last layer) goes there next.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from anoncli.errors import AnoncliError
from anoncli.methods.base import MethodOptions, MethodOutput
from anoncli.methods.learned import LearnedMethod
from anoncli.methods.pipeline import Pipeline, require_samples
from anoncli.synthesis import world_features
from anoncli.synthesis.world_norm import CLIP_SIGMA, PseudoSpeakers, impose, utterance_stats

SAMPLER = "sampler"
# config["normalisation"]: "pseudo" imposes a pseudo-speaker drawn per utterance (gender, identity);
# "speaker" the speaker's own statistics pooled over the corpus, contours flattened (emotion; two passes)
NORMALISATIONS = ("pseudo", "speaker")
GENERATOR = "generator"
# config["covariance"]: "full" imposes the pseudo-speaker's mean and covariance of the coded envelope
# (whitening and colouring), "diagonal" its per-dimension mean and std only
COVARIANCES = ("full", "diagonal")


class ResidualSlot(torch.nn.Module):
    """The generator's place on the normalised features: (B, 40, T) coded envelope in, the same out (identity)."""

    stride = 1

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


class WorldNorm(LearnedMethod):
    """Pseudo-speaker normalisation of WORLD features; the model is the fitted pseudo-speaker distribution."""

    name = "world_norm"

    def build(self, state: dict) -> dict[str, torch.nn.Module]:
        return {"residual": ResidualSlot()}

    def transform(self, norm: torch.Tensor, params: list[dict[str, Any]]) -> torch.Tensor:
        return self.modules["residual"](norm)


class WorldNormPipeline(Pipeline):
    """Pipeline `world_norm`: WORLD features, pseudo-speaker statistics, the method's residual slot, WORLD.

    AnoncliError for a --vocoder (WORLD is the only synthesis) or a model without a usable `sampler`.
    """

    name = "world_norm"
    takes_strength = True

    def __init__(self, method: Any, state: dict, options: MethodOptions):
        super().__init__(method, state, options)
        if options.extra.get("strength") is not None and GENERATOR not in method.modules:
            raise AnoncliError(f"--param strength: {getattr(method, 'checkpoint_path', 'the model')} has no generator")
        if options.vocoder not in (None, "world"):
            raise AnoncliError(f"--vocoder {options.vocoder}: a world_norm model synthesises with WORLD only")
        tensors = state.get("models", {}).get(SAMPLER)
        source = getattr(method, "checkpoint_path", "the model")
        self.vocoder_name = "world"
        covariance = method.model_config.get("covariance", "full")
        if covariance not in COVARIANCES:
            raise AnoncliError(
                f"{source}: covariance {covariance!r} in the model's config (known: {', '.join(COVARIANCES)})"
            )
        self.full = covariance == "full"
        normalisation = method.model_config.get("normalisation", "pseudo")
        if normalisation not in NORMALISATIONS:
            raise AnoncliError(f"{source}: normalisation {normalisation!r} (known: {', '.join(NORMALISATIONS)})")
        if normalisation == "speaker":  # emotion: each speaker's own pooled statistics, a two-pass job
            self.two_pass = True
            self.sampler = None
            self.f0_keep = float(method.model_config.get("f0_keep", 0.5))
            self.level_keep = float(method.model_config.get("level_keep", 0.5))
            self.statistics_file = options.corpus_statistics
            self._table: dict | None = None
            return
        if not tensors:
            raise AnoncliError(f"{source}: no pseudo-speaker sampler in the model (tensors {SAMPLER}.*)")
        try:
            arrays = {
                k: v.cpu().double().numpy() if v.is_floating_point() else v.cpu().numpy() for k, v in tensors.items()
            }
            clip_sigma = float(method.model_config.get("clip_sigma", CLIP_SIGMA))
            self.sampler = PseudoSpeakers.from_arrays(arrays, method.classes, clip_sigma)
        except (KeyError, ValueError, TypeError) as err:
            raise AnoncliError(f"{source}: unusable pseudo-speaker sampler ({err})") from None

    @classmethod
    def networks(cls, state: dict, config: dict) -> dict[str, torch.nn.Module] | None:
        """A model with a `generator` (`anoncli train --method gengan-world`, `pcmelgan-world`): the bounded
        residual generator its `config["generator"]` describes, weights loaded; None without one (the method's
        own residual slot). AnoncliError for a generator config or weights that do not fit."""
        tensors = (state.get("models") or {}).get(GENERATOR)
        if not tensors:
            return None
        from anoncli.models.world_nets import build_generator

        try:
            generator = build_generator(config[GENERATOR])
            generator.load_state_dict(tensors)
        except (KeyError, ValueError, TypeError, RuntimeError) as err:
            raise AnoncliError(f"the model's generator cannot be built ({str(err).splitlines()[0]})") from None
        return {GENERATOR: generator}

    def corpus_statistics(self, utterances: list, progress: bool = True) -> dict | None:
        """The first pass of the speaker normalisation: each speaker's `Stats` pooled over all their files
        (`speaker_key`: a file without a speaker is its own), as JSON-ready lists; None for a pseudo-speaker
        model. A file that cannot be read or is shorter than a frame is left out (it fails in the second pass)."""
        if not self.two_pass:
            return None
        from collections import defaultdict

        from anoncli.audio import read_audio, resample
        from anoncli.errors import AudioError
        from anoncli.methods.learned import speaker_key
        from anoncli.progress import progress_bar
        from anoncli.synthesis.world_norm import pool_stats

        rate = self.method.sample_rate
        grouped = defaultdict(list)
        for utt in progress_bar(utterances, desc="speaker statistics", unit="file", enabled=progress):
            try:
                audio = read_audio(utt.path)
            except (AudioError, OSError):
                continue
            wave = resample(audio.samples, audio.sample_rate, rate) if audio.sample_rate != rate else audio.samples
            if len(wave) < world_features.min_samples(rate):
                continue
            grouped[speaker_key(utt)].append(world_features.analyse(wave, rate, aperiodicity=False))
        return {key: stats_to_json(pool_stats(items)) for key, items in sorted(grouped.items())}

    def speaker_stats(self, key: str):
        """The pooled `Stats` of `key` from the first pass's file, or None when the file does not list it or
        there is none (`process` called outside an `anonymize` job): the file is then normalised to its own
        statistics, as a speaker with one file."""
        if self._table is None:
            import json

            if not self.statistics_file:  # not run by the job engine (a library call): every file is its own
                self._table = {}
            else:
                with open(self.statistics_file, encoding="utf-8") as handle:
                    self._table = json.load(handle)["statistics"]
        entry = self._table.get(key)
        return None if entry is None else stats_from_json(entry)

    def utterance_params(self, params: dict[str, Any], seed: int) -> dict[str, Any]:
        """The drawn target gender and the seed of the pseudo-speaker draw (recorded in the manifest); the
        speaker normalisation draws nothing but the generator's noise (`seed`)."""
        if self.two_pass:
            return {**params, "pseudo_seed": int(seed)}
        gender, _ = self.sampler.draw(seed)
        return {**params, "target": gender, "pseudo_seed": int(seed)}

    @torch.no_grad()
    def process(self, waves: list[torch.Tensor], params: list[dict[str, Any]]) -> list[MethodOutput]:
        return [MethodOutput(audio=self.process_one(w, p)) for w, p in zip(waves, params)]

    @torch.no_grad()
    def process_one(self, wave: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        """One utterance (T,) -> its normalised wave (T,) float32; AudioError when shorter than a frame."""
        rate = self.method.sample_rate
        wave = wave.to("cpu", torch.float32)
        require_samples(wave, world_features.min_samples(rate), rate, "WORLD analysis")
        features = world_features.analyse(wave.numpy(), rate)
        if self.two_pass:
            from anoncli.synthesis.world_norm import flatten_to_speaker

            own = self.speaker_stats(params.get("speaker", ""))
            stats = own if own is not None else utterance_stats(features)
            out = flatten_to_speaker(features, stats, self.f0_keep, self.level_keep, full=self.full)
            if GENERATOR in self.method.modules:
                out = self.generate(out, None, params["pseudo_seed"])
            return torch.from_numpy(world_features.synthesize(out))
        gender, target = self.sampler.draw(params["pseudo_seed"])
        out = impose(features, utterance_stats(features), target, full=self.full)
        if GENERATOR in self.method.modules:
            return torch.from_numpy(world_features.synthesize(self.generate(out, gender, params["pseudo_seed"])))
        coded = torch.from_numpy(out.mcep.T[None].astype(np.float32)).to(self.method.device)
        changed = self.method.transform(coded, [params])[0].cpu().double().numpy().T
        return torch.from_numpy(world_features.synthesize(out.with_(mcep=changed)))

    def generate(self, features, gender: str, seed: int):
        """The generator's bounded residual on normalised `features` (CodedWorld), conditioned on the drawn
        `gender` and fed the noise of `seed`; voicing and level are kept."""
        from anoncli.models.world_nets import frame_features, noise_channel, split_features

        generator = self.method.modules[GENERATOR]
        x = frame_features(features.mcep, features.log_f0, features.voiced, features.bap, features.level_db)
        cond = torch.zeros(1, generator.cond)
        if generator.cond and gender is not None:
            cond[0, self.method.classes.index(gender)] = 1.0
        noise = noise_channel(seed, x.shape[-1])
        device = self.method.device
        out = generator(x[None].to(device), cond.to(device), noise.to(device), strength=self.strength)[0]
        parts = split_features(out)
        bap = features.bap.copy()
        bap[:, :1] = parts["bap"]
        return features.with_(mcep=parts["mcep"], log_f0=np.where(features.voiced, parts["log_f0"], 0.0), bap=bap)


def stats_to_json(stats) -> dict:
    """A `Stats` as plain lists and floats (the first pass's file)."""
    return {
        "mcep_mean": stats.mcep_mean.tolist(),
        "mcep_std": stats.mcep_std.tolist(),
        "f0_mean": stats.f0_mean,
        "f0_std": stats.f0_std,
        "level_db": stats.level_db,
        "mcep_corr": None if stats.mcep_corr is None else np.round(stats.mcep_corr, 6).tolist(),
    }


def stats_from_json(entry: dict):
    """The inverse of `stats_to_json`."""
    from anoncli.synthesis.world_norm import Stats

    corr = entry.get("mcep_corr")
    return Stats(
        np.asarray(entry["mcep_mean"], dtype=np.float64),
        np.asarray(entry["mcep_std"], dtype=np.float64),
        entry["f0_mean"],
        entry["f0_std"],
        float(entry["level_db"]),
        None if corr is None else np.asarray(corr, dtype=np.float64),
    )


def model_config(sample_rate: int = 16000, covariance: str = "full", clip_sigma: float = CLIP_SIGMA) -> dict:
    """The config a world_norm model declares (what the pipeline reads): synthesis, sample_rate (Hz),
    frame period (ms), coded envelope size, `covariance` (one of COVARIANCES) and `clip_sigma` (where a
    pseudo-speaker's standard normal draw is clipped). ValueError for an unknown `covariance`."""
    if covariance not in COVARIANCES:
        raise ValueError(f"covariance {covariance!r}: choose {' or '.join(COVARIANCES)}")
    return {
        "synthesis": WorldNormPipeline.name,
        "sample_rate": int(sample_rate),
        "frame_period_ms": world_features.FRAME_PERIOD_MS,
        "n_mcep": world_features.N_MCEP,
        "covariance": covariance,
        "clip_sigma": float(clip_sigma),
    }


def save_model(
    sampler: PseudoSpeakers,
    folder: str | Path,
    card: dict | None = None,
    sample_rate: int = 16000,
    covariance: str = "full",
    attribute: str = "gender",
) -> Path:
    """Write a world_norm model: `folder/model.safetensors` (the sampler's arrays) and `folder/card.json`
    (`card`'s keys plus method and model: `model_config` with the sampler's clip sigma, classes, `attribute`).
    Returns the weights' path; OSError when the folder is not writable, ValueError for an unknown `covariance`."""
    config = model_config(sample_rate, covariance, sampler.clip_sigma)
    from anoncli.atomic import atomic_write_json
    from anoncli.models.safetensors_io import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "model.safetensors"
    save_file(
        {f"{SAMPLER}.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in sampler.arrays().items()}, weights
    )
    atomic_write_json(
        folder / "card.json",
        {
            **(card or {}),
            "method": WorldNorm.name,
            "model": {"config": config, "classes": list(sampler.genders), "attribute": attribute},
        },
    )
    return weights
