"""Source-filter training of PCMelGAN, GenGAN and PSEGAN: the generators move envelope, pitch and energy.

Each utterance is analysed once with WORLD (`anoncli.synthesis.source_filter`,
DIO + StoneMask, 10 ms frames) and cached on disk (`cache_dir`, default
/tmp/anoncli-sf-cache; never the corpus or the repository): the envelope's
80-band log-mel, the log-F0 contour, the frame energy and the utterance
statistics. A training step then costs no signal processing.

Generator = the paper's U-Net on the envelope log-mel (PSEGAN: gated dilated
bottleneck and target class; GenGAN: noise channel; PCMelGAN: filter F, then
generator G with noise and target class) plus a `ProsodyHead` that maps
(utterance statistics, target class, noise) to a log-F0 shift and range
scale, an energy range scale and a formant warp. The target class is drawn
uniformly and independently of the source for every example, so an attacker
trained on anonymized audio has nothing to learn from it.

Discriminator = the evidence `anoncli evaluate`'s attackers use, summed as
logits over K + 1 outputs (K classes + "fake"): an AlexNet-like CNN on the
envelope log-mel crop (energy contour included), an MLP on the utterance's
F0/energy statistics, and an MLP on a speaker embedding (resemblyzer's
encoder fed from the envelope log-mel; `anoncli.models.speaker`).

  L_G = adv * CE(D(fake), target) + dist * L1(U-Net out, in) (GenGAN: MSE)
        + prior * |stats(fake) - mean stats(target class)|^2 on `prior_dims` (z-scored)
        + speaker * (1 - cos(E(in), E(out)))                  (PSEGAN: keep the speaker)
        [PCMelGAN: + CE(FD(F(x)), uniform) for the filter]
  L_D = 1/2 [CE(D(real), source class) + CE(D(fake), y)]      [PCMelGAN: + CE(FD(F(x)), source)]
  with y = the source class (`d_fake = "source"`, default: D is an informed attacker that
  learns the source class from generated data) or the extra fake class (`d_fake = "fake"`).

Model selection is on audio: every `val_every` epochs the validation
speakers are anonymized through the inference path (WORLD resynthesis), and
an `evaluate`-style ignorant attacker (logistic regression on resemblyzer
embedding + spectral + prosody statistics, `anoncli.scoring.features`,
trained on the training speakers' original audio) predicts the attribute;
score = normalised privacy -/+ speaker-similarity term - STOI shortfall.

The source-filter trainers are registered as `--method pcmelgan-sf`,
`gengan-sf` and `psegan-sf` (presets `sf-quick`, CPU, and `sf-full`, GPU); the
models they write are `pcmelgan`, `gengan` and `psegan` models (what
`anonymize --method gengan` loads), whose checkpoint `config` says
`synthesis: source_filter`. `SourceFilterTrainer` extends the GAN trainer
(`gan_common.GANTrainer`: attribute, data split, classes, card); each method
module subclasses it with its envelope networks (`envelope_networks`,
`envelope_change`, `distortion`).

The run writes checkpoints (resumable), log.jsonl, log.parquet, model.json,
registers the best model in the local store with --register, and exports
`RUN/shipped/model.safetensors` + `card.json` (the form the package ships).
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from anoncli import modelstore
from anoncli.audio import resample
from anoncli.corpus.reading import read_utterance_audio
from anoncli.models.discriminator import AlexNetDiscriminator
from anoncli.models.prosody import (
    NOISE_DIM,
    STATS_DIM,
    ProsodyHead,
    apply_prosody,
    band_centres,
    utterance_stats,
    warp_logmel,
)
from anoncli.models.safetensors_io import save_file
from anoncli.models.speaker import MelSpeakerEncoder
from anoncli.scoring.metrics import normalised_accuracy
from anoncli.synthesis import source_filter as sf
from anoncli.training.gan_common import GANConfig, GANTrainer
from anoncli.training.loop import FitResult, TrainConfig

CACHE_VERSION = 1

LICENCES = {
    "librispeech": "LibriSpeech (Panayotov et al. 2015): CC BY 4.0",
    "ravdess": "RAVDESS (Livingstone & Russo 2018): CC BY-NC-SA 4.0, non-commercial use only",
    "emodb": "Berlin Database of Emotional Speech (Burkhardt et al. 2005): free for research use",
}


@dataclass
class SourceFilterConfig(GANConfig):
    """The source-filter trainers' settings: GANConfig plus the PSEGAN bottleneck (gated_*), the prosody
    head (bounds of its four parameters, hidden width), the loss weights (adv, dist, prior on the
    `prior_dims` statistics, speaker, param_reg), the discriminator's target for generated data (d_fake:
    "source" or "fake"), whether it sees a speaker embedding, and the audio-domain validation (utterances
    anonymized, utterances the attacker learns from, the speaker-similarity weight and the STOI floor)."""

    synthesis: str = "source_filter"
    gated_width: int = 96
    gated_hidden: int = 48
    gated_stacks: int = 1
    prosody_bounds: list[float] = field(default_factory=lambda: [0.8, 0.7, 0.7, 0.2])
    prosody_hidden: int = 64
    adv_weight: float = 1.0
    d_fake: str = "source"
    dist_weight: float = 0.5
    speaker_weight: float = 0.0
    use_embedding: bool = True
    prior_weight: float = 1.0
    prior_dims: list[int] = field(default_factory=lambda: [0, 2, 3, 4])
    param_reg: float = 0.01
    val_utterances: int = 40
    attacker_utterances: int = 200
    speaker_val_weight: float = -0.3
    stoi_floor: float = 0.75

    def check(self) -> None:
        super().check()
        if self.d_fake not in ("source", "fake"):
            from anoncli.errors import AnoncliError

            raise AnoncliError(f"--param d_fake={self.d_fake}: expected source or fake")


def sf_presets(hide_speaker_trait: bool) -> dict[str, SourceFilterConfig]:
    """The sf-quick (2 CPU cores) and sf-full (GPU) presets. `hide_speaker_trait`: the attribute is a trait
    of the speaker (gender: move F0 level, reward a changed voice); else a state of the utterance (emotion:
    move F0 range and energy shape, keep the speaker)."""
    trait = hide_speaker_trait
    quick = SourceFilterConfig(
        epochs=30,
        steps_per_epoch=30,
        batch_size=16,
        segment_frames=128,
        val_every=3,
        val_fraction=0.15,
        d_warmup_steps=100,
        amp=False,
        cache_dir="/tmp/anoncli-sf-cache",
        prosody_bounds=[0.8, 0.7, 0.7, 0.2] if trait else [0.3, 1.0, 1.0, 0.05],
        dist_weight=0.5 if trait else 1.0,
        speaker_weight=0.0 if trait else 5.0,
        # statistics the prior pulls toward the target class: F0 level for gender; F0 range and energy shape for emotion
        prior_dims=[0, 2, 3, 4] if trait else [1, 5, 6, 7],
        # + penalises a speaker change (PSEGAN keeps the speaker), - rewards it (gender methods hide identity too)
        speaker_val_weight=-0.3 if trait else 1.0,
        stoi_floor=0.75 if trait else 0.8,
    )
    full = SourceFilterConfig(
        **{
            **quick.__dict__,
            "epochs": 100,
            "steps_per_epoch": 200,
            "batch_size": 32,
            "segment_frames": 256,
            "lr_g": 2e-4,
            "lr_d": 2e-4,
            "gated_width": 256,
            "gated_hidden": 128,
            "gated_stacks": 2,
            "d_width": 1.0,
            "d_first_stride": 1,
            "d_warmup_steps": 500,
            "val_every": 2,
            "val_utterances": 120,
            "attacker_utterances": 1000,
            "threads": 8,
        }
    )
    return {"sf-quick": quick, "sf-full": full}


# --------------------------------------------------------------------------- data


@dataclass
class SFItem:
    """One training utterance's WORLD features at 10 ms frames: envelope log-mel (80, T), log F0 (T,), voicing, energy in dB, stats."""

    utt_id: str
    speaker: str
    label: int
    env: torch.Tensor  # (80, T) envelope log-mel (log10 magnitude)
    log_f0: torch.Tensor  # (T,) natural log Hz (0 where unvoiced)
    voiced: torch.Tensor  # (T,) bool
    energy: torch.Tensor  # (T,) dB
    stats: torch.Tensor  # (STATS_DIM,)
    mu: float
    sigma: float
    utt: Any


def extract_features(wave: np.ndarray, sample_rate: int) -> dict[str, torch.Tensor]:
    """WORLD features of one 16 kHz wave for training (no aperiodicity)."""
    features = sf.analyse(wave, sample_rate, aperiodicity=False)
    voiced = features.f0 > 0
    return {
        "env": sf.envelope_logmel(features.envelope, sample_rate).to(torch.float16),
        "log_f0": torch.from_numpy(np.where(voiced, np.log(np.maximum(features.f0, 1.0)), 0.0).astype(np.float32)),
        "energy": torch.from_numpy(sf.frame_energy_db(features.envelope)),
    }


def load_features(utterances, sample_rate: int, cache_dir: Path, progress: bool) -> dict[str, dict]:
    """utt_id -> WORLD training features of each utterance at `sample_rate` Hz, computed once and cached in `cache_dir`.

    Unreadable files are skipped with a line on stderr.
    """
    digest = hashlib.sha256(f"sf{CACHE_VERSION}|{sample_rate}".encode())
    for utt in utterances:
        digest.update(f"|{utt.path}".encode())
    cache_file = cache_dir / f"world-{digest.hexdigest()[:16]}.pt"
    if cache_file.exists():
        return torch.load(cache_file, map_location="cpu", weights_only=True)
    from anoncli.training.common import atomic_torch_save, resampled_waves

    out: dict[str, dict] = {}
    for utt, wave in resampled_waves(utterances, sample_rate, "WORLD features", progress):
        out[utt.utt_id] = extract_features(wave.numpy(), sample_rate)
    cache_dir.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(out, cache_file)
    return out


def make_item(utt, label: int, feats: dict) -> SFItem:
    """An `SFItem` from one utterance's cached features, with its prosody stats and envelope mean and std."""
    env = feats["env"].float()
    voiced = feats["log_f0"] > 0
    stats = utterance_stats(feats["log_f0"], voiced, feats["energy"])
    mu, sigma = float(env.mean()), float(env.std())
    return SFItem(
        utt.utt_id, str(utt.speaker), label, env, feats["log_f0"], voiced, feats["energy"], stats, mu, sigma, utt
    )


# --------------------------------------------------------------------------- models


class EvidenceDiscriminator(nn.Module):
    """Envelope CNN + F0/energy statistics MLP + speaker-embedding MLP, logits summed: (B, outputs)."""

    def __init__(self, outputs: int, width: float, first_stride: int, use_embedding: bool):
        super().__init__()
        self.envelope = AlexNetDiscriminator(outputs, width=width, first_stride=first_stride)
        self.stats = nn.Sequential(
            nn.Linear(STATS_DIM, 64), nn.LeakyReLU(0.2), nn.Linear(64, 64), nn.LeakyReLU(0.2), nn.Linear(64, outputs)
        )
        self.embedding = (
            nn.Sequential(nn.Linear(256, 64), nn.LeakyReLU(0.2), nn.Linear(64, outputs)) if use_embedding else None
        )

    def forward(self, env: torch.Tensor, stats: torch.Tensor, embedding: torch.Tensor | None) -> torch.Tensor:
        """Envelope crops (B, 1, 80, S), stats (B, STATS_DIM) and optional speaker embeddings (B, 256) -> summed logits (B, outputs)."""
        logits = self.envelope(env) + self.stats(stats)
        if self.embedding is not None and embedding is not None:
            logits = logits + self.embedding(embedding)
        return logits


# --------------------------------------------------------------------------- trainer


class SourceFilterTrainer(GANTrainer):
    """Source-filter training of an attribute GAN: prosody head plus envelope U-Net(s), validated on
    resynthesised audio. Method modules declare `envelope_networks`, `envelope_change` (and `distortion`,
    `filter_stage` where they differ)."""

    config_class: ClassVar[type[TrainConfig]] = SourceFilterConfig
    presets: ClassVar[dict] = sf_presets(True)
    default_preset: ClassVar[str] = "sf-quick"
    selection = ("val_score", "max")
    model_keys: ClassVar[tuple[str, ...]] = (
        "synthesis",
        "sample_rate",
        "channels",
        "residual",
        "gated_width",
        "gated_hidden",
        "gated_stacks",
        "prosody_bounds",
        "prosody_hidden",
    )
    # a filter network F before the generator, with its own discriminator (PCMelGAN)
    filter_stage: ClassVar[bool] = False

    # ---- declared by each method
    def envelope_networks(self, num_classes: int) -> dict[str, nn.Module]:
        """The envelope U-Net(s) an anonymizer loads, by checkpoint name ("generator", and "filter" with a filter stage)."""
        raise NotImplementedError

    def envelope_change(self, x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the envelope U-Net(s) on (B, 1, 80, S) normalised crops towards `targets` (B,), noise from
        `self.rng` -> (output, filter output or None)."""
        raise NotImplementedError

    def distortion(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The U-Net's distortion loss: L1 (GenGAN: MSE)."""
        return nn.functional.l1_loss(out, x)

    # ---- data and networks
    def setup(self) -> None:
        """Split the labelled utterances, load WORLD features (cached; utterances with at least 5 voiced
        frames), and build the networks, discriminator(s), speaker matcher and optimisers.

        Raises AnoncliError when the attribute is missing or single-valued, or too few utterances remain.
        """
        c = self.config
        self.split()
        feats = load_features(
            self.train_utts + self.val_utts, c.sample_rate, Path(c.cache_dir).expanduser(), c.progress
        )

        def items(group) -> list[SFItem]:
            return [
                make_item(u, self.label_of(u), feats[u.utt_id])
                for u in group
                if u.utt_id in feats and int(feats[u.utt_id]["log_f0"].gt(0).sum()) >= 5
            ]

        self.train, self.val = items(self.train_utts), items(self.val_utts)
        self.corpus_name = self.corpus_root.name
        self.check_sizes(self.train, self.val)
        self.build()

    def build(self) -> None:
        c, k = self.config, len(self.classes)
        self.networks = self.envelope_networks(k)
        head = ProsodyHead(k, bounds=c.prosody_bounds, hidden=c.prosody_hidden)
        stats = torch.stack([i.stats for i in self.train])
        head.stats_mean.copy_(stats.mean(0))
        head.stats_std.copy_(stats.std(0).clamp(min=1e-3))
        self.networks["prosody"] = head
        labels = torch.tensor([i.label for i in self.train])
        self.stats_mean, self.stats_std = (
            head.stats_mean.clone().to(self.device),
            head.stats_std.clone().to(self.device),
        )
        self.class_stats = torch.stack(
            [stats[labels == j].mean(0) if bool((labels == j).any()) else stats.mean(0) for j in range(k)]
        ).to(self.device)
        self.discriminator = EvidenceDiscriminator(k + 1, c.d_width, c.d_first_stride, c.use_embedding)
        self.filter_d = (
            AlexNetDiscriminator(k, width=c.d_width, first_stride=c.d_first_stride) if self.filter_stage else None
        )
        mel = sf.envelope_mel(c.sample_rate)
        self.centres = band_centres(mel.filterbank).to(self.device)
        needs_matcher = c.use_embedding or c.speaker_weight > 0
        self.matcher = (
            MelSpeakerEncoder(
                mel.filterbank, mel.sample_rate, mel.n_fft, int(sf.FRAME_PERIOD_MS * mel.sample_rate / 1000)
            ).to(self.device)
            if needs_matcher
            else None
        )
        for item in self.train:  # the contours the prosody losses need, on the training device
            item.log_f0, item.voiced, item.energy, item.stats = (
                t.to(self.device) for t in (item.log_f0, item.voiced, item.energy, item.stats)
            )
        g_params = [p for m in self.networks.values() for p in m.parameters()]
        self.opt_g = torch.optim.Adam(g_params, lr=c.lr_g, betas=(0.5, 0.9))
        d_params = list(self.discriminator.parameters()) + (list(self.filter_d.parameters()) if self.filter_d else [])
        self.opt_d = torch.optim.Adam(d_params, lr=c.lr_d, betas=(0.5, 0.9))
        self.validation_ready = False

    def modules(self) -> dict[str, nn.Module]:
        """Every trained module by name: the inference modules plus the discriminator(s)."""
        out = dict(self.networks)
        out["discriminator"] = self.discriminator
        if self.filter_d is not None:
            out["filter_discriminator"] = self.filter_d
        return out

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt_g, "discriminator": self.opt_d}

    def inference_modules(self) -> list[str]:
        return list(self.networks)

    # ---- one step
    def crops(self, items: list[SFItem]):
        """One random `segment_frames` crop of each item's envelope (short ones edge-padded): (B, 80, S) and the start frames."""
        frames = self.config.segment_frames
        starts, envs = [], []
        for item in items:
            env = item.env
            if env.shape[-1] < frames:
                env = nn.functional.pad(env.unsqueeze(0), (0, frames - env.shape[-1]), mode="replicate").squeeze(0)
            start = int(torch.randint(0, env.shape[-1] - frames + 1, (1,), generator=self.rng))
            starts.append(start)
            envs.append(env[:, start : start + frames])
        return torch.stack(envs).to(self.device), starts

    def norm_stats(self, stats: torch.Tensor) -> torch.Tensor:
        """Prosody stats (B, STATS_DIM) standardised with the training set's mean and std."""
        return (stats - self.stats_mean) / self.stats_std

    def embed(self, env_raw: torch.Tensor) -> torch.Tensor | None:
        """Speaker embeddings (B, 256) of raw envelope crops, or None without a speaker matcher."""
        return self.matcher(env_raw) if self.matcher is not None else None

    def forward_fake(self, items: list[SFItem], targets: torch.Tensor):
        """Run prosody head and envelope U-Net(s) on a batch towards `targets`; returns the fake crops and what the losses need."""
        frames = self.config.segment_frames
        z = torch.randn(len(items), NOISE_DIM, generator=self.rng).to(self.device)
        stats_real = torch.stack([i.stats for i in items])
        params = self.networks["prosody"](stats_real, targets, z)
        env_raw, starts = self.crops(items)
        fake_stats, gains = [], []
        for item, p, start in zip(items, params, starts):
            new_log_f0, gain = apply_prosody(item.log_f0, item.voiced, item.energy, p)
            fake_stats.append(
                utterance_stats(
                    new_log_f0, item.voiced, item.energy + gain, active=item.energy > item.energy.max() - 40.0
                )
            )
            g = gain[start : start + frames]
            gains.append(nn.functional.pad(g, (0, frames - g.shape[0]), mode="replicate") if g.shape[0] < frames else g)
        mu = torch.tensor([i.mu for i in items], device=self.device)[:, None, None]
        sigma = torch.tensor([i.sigma for i in items], device=self.device)[:, None, None]
        warped = warp_logmel(env_raw, params[:, 3], self.centres)
        x_in = ((warped - mu) / (3 * sigma + 1e-6)).clamp(-1, 1).unsqueeze(1)
        out, filtered = self.envelope_change(x_in, targets)
        fake_raw = out.squeeze(1) * (3 * sigma + 1e-6) + mu + torch.stack(gains)[:, None, :] / 20.0
        return {
            "params": params,
            "stats": torch.stack(fake_stats),
            "x_in": x_in,
            "out": out,
            "filtered": filtered,
            "raw": fake_raw,
            "env_raw": env_raw,
            "mu": mu,
            "sigma": sigma,
            "stats_real": stats_real,
        }

    def d_input(self, raw: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """A raw envelope crop normalised per utterance for the discriminator: (B, 80, S) -> (B, 1, 80, S)."""
        return ((raw - mu) / (3 * sigma + 1e-6)).unsqueeze(1)

    def batches(self, epoch: int):
        """Endless batches of `batch_size` utterances drawn with replacement (`steps_per_epoch` ends an epoch)."""
        while True:
            picks = torch.randint(0, len(self.train), (self.config.batch_size,), generator=self.rng).tolist()
            yield [self.train[i] for i in picks]

    def train_step(self, items: list[SFItem]) -> dict[str, float]:
        """One generator and discriminator update on `items`; returns the losses as floats."""
        c, k = self.config, len(self.classes)
        labels = torch.tensor([i.label for i in items], device=self.device)
        targets = torch.randint(0, k, (len(items),), generator=self.rng).to(self.device)
        f = self.forward_fake(items, targets)
        emb_fake = self.embed(f["raw"])
        with torch.no_grad():
            emb_real = self.embed(f["env_raw"])
        fake_d = self.d_input(f["raw"], f["mu"], f["sigma"])
        adv = nn.functional.cross_entropy(self.discriminator(fake_d, self.norm_stats(f["stats"]), emb_fake), targets)
        dist = self.distortion(f["out"], f["x_in"])
        dims = list(c.prior_dims)
        prior = (((f["stats"] - self.class_stats[targets]) / self.stats_std)[:, dims] ** 2).mean() if dims else adv * 0
        loss_g = (
            c.adv_weight * adv + c.dist_weight * dist + c.prior_weight * prior + c.param_reg * (f["params"] ** 2).mean()
        )
        losses = {"g_adv": adv.item(), "g_dist": dist.item(), "g_prior": prior.item()}
        if c.speaker_weight > 0 and emb_fake is not None:
            spk = (1.0 - (emb_fake * emb_real).sum(1)).mean()
            loss_g = loss_g + c.speaker_weight * spk
            losses["g_spk"] = spk.item()
        if self.filter_d is not None:
            uniform = torch.full((len(items), k), 1.0 / k, device=self.device)
            f_adv = -(uniform * torch.log_softmax(self.filter_d(f["filtered"]), 1)).sum(1).mean()
            loss_g = loss_g + c.adv_weight * f_adv
            losses["f_adv"] = f_adv.item()
        self.optimize("generator", loss_g)
        # discriminator(s)
        real_d = self.d_input(f["env_raw"], f["mu"], f["sigma"])
        # "fake": PCMelGAN/PSEGAN's extra fake class; "source": D learns to recover the *source* class from
        # generated data too (an informed attacker), so the generator must remove what betrays it
        fake_target = torch.full_like(labels, k) if c.d_fake == "fake" else labels
        loss_d = 0.5 * (
            nn.functional.cross_entropy(self.discriminator(real_d, self.norm_stats(f["stats_real"]), emb_real), labels)
            + nn.functional.cross_entropy(
                self.discriminator(
                    fake_d.detach(),
                    self.norm_stats(f["stats"].detach()),
                    None if emb_fake is None else emb_fake.detach(),
                ),
                fake_target,
            )
        )
        if self.filter_d is not None:
            loss_d = loss_d + nn.functional.cross_entropy(self.filter_d(f["filtered"].detach()), labels)
        self.optimize("discriminator", loss_d)
        losses["d"] = loss_d.item()
        return losses

    def start(self) -> None:
        """Teach the discriminator the classes on real data before the game (a CPU budget needs it)."""

        def draw():
            picks = torch.randint(0, len(self.train), (self.config.batch_size,), generator=self.rng).tolist()
            items = [self.train[i] for i in picks]
            env_raw, _ = self.crops(items)
            mu = torch.tensor([i.mu for i in items], device=self.device)[:, None, None]
            sigma = torch.tensor([i.sigma for i in items], device=self.device)[:, None, None]
            with torch.no_grad():
                emb = self.embed(env_raw)
            return (
                self.d_input(env_raw, mu, sigma),
                self.norm_stats(torch.stack([i.stats for i in items])),
                emb,
                torch.tensor([i.label for i in items], device=self.device),
            )

        self.warm_up(self.config.d_warmup_steps, [("discriminator", self.discriminator)], draw)

    # ---- audio-domain validation
    def inference_state(self) -> dict:
        """The checkpoint-style state an anonymizer loads: method, model config, classes, attribute and module weights."""
        return {
            "format_version": modelstore.FORMAT_VERSION,
            "method": self.method,
            **self.model_info(),
            "models": {
                name: {k: v.detach().clone() for k, v in m.state_dict().items()} for name, m in self.networks.items()
            },
        }

    def prepare_validation(self) -> None:
        """Pick validation and attacker utterances, and fit the audio-domain attribute attacker on the originals."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        from anoncli.scoring.embeddings import load_backend

        c = self.config
        self.backend = load_backend(None)
        rng = np.random.default_rng(c.seed)
        val = list(self.val)
        if len(val) > c.val_utterances:
            val = [val[i] for i in sorted(rng.choice(len(val), c.val_utterances, replace=False))]
        self.val_set = val
        self.val_waves = [self.read_wave(i.utt) for i in val]
        train = list(self.train)
        if len(train) > c.attacker_utterances:
            train = [train[i] for i in sorted(rng.choice(len(train), c.attacker_utterances, replace=False))]
        x_train = self.audio_features([self.read_wave(i.utt) for i in train])
        self.attacker = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=3000))
        self.attacker.fit(x_train, [i.label for i in train])
        self.val_original = self.audio_features(self.val_waves)
        self.val_embed_original = self.val_original[:, :256]
        self.val_acc_original = float(
            np.mean(self.attacker.predict(self.val_original) == np.array([i.label for i in val]))
        )
        self.validation_ready = True

    def read_wave(self, utt) -> np.ndarray:
        """One utterance decoded and resampled to the training rate: (T,) float32; AudioError on a bad file."""
        audio = read_utterance_audio(utt)
        return resample(torch.from_numpy(audio.samples), audio.sample_rate, self.config.sample_rate).numpy()

    def audio_features(self, waves: list[np.ndarray]) -> np.ndarray:
        """The attacker's features of each wave (speaker embedding, F0 and energy statistics): (N, D)."""
        from anoncli.scoring.features import attribute_features
        from anoncli.scoring.signal_metrics import f0_track

        embeddings = self.backend.embed(waves)
        return np.stack(
            [attribute_features(w, f0_track(w, self.config.sample_rate), e) for w, e in zip(waves, embeddings)]
        )

    def validate(self) -> dict[str, float]:
        """Anonymise the validation set as `anonymize` would: attacker accuracy, privacy, speaker cosine, STOI and the score."""
        from anoncli.methods import MethodOptions, method_class
        from anoncli.scoring.signal_metrics import stoi

        if not self.validation_ready:
            self.prepare_validation()
        method = method_class(self.method).from_state(self.inference_state(), MethodOptions(seed=self.config.seed))
        outputs = []
        for item, wave in zip(self.val_set, self.val_waves):
            result = method.process([torch.from_numpy(wave)], [method.utterance_params(item.utt)])[0]
            audio = getattr(result, "audio", result)  # a MethodOutput (or a bare tensor)
            outputs.append(np.asarray(audio.numpy() if isinstance(audio, torch.Tensor) else audio, dtype=np.float32))
        feats = self.audio_features(outputs)
        labels = np.array([i.label for i in self.val_set])
        acc = float(np.mean(self.attacker.predict(feats) == labels))
        cos = float(np.mean(np.sum(feats[:, :256] * self.val_embed_original, axis=1)))
        stois = [float(stoi(w, o, self.config.sample_rate)) for w, o in zip(self.val_waves, outputs)]
        stoi_mean = float(np.nanmean(stois)) if stois else float("nan")
        privacy = normalised_accuracy(acc, 1.0 / len(self.classes), full=1.0)
        c = self.config
        score = privacy - c.speaker_val_weight * 100.0 * (1.0 - cos) - 300.0 * max(0.0, c.stoi_floor - stoi_mean)
        return {
            "val_acc": acc,
            "val_acc_original": self.val_acc_original,
            "val_privacy": privacy,
            "val_speaker_cos": cos,
            "val_stoi": stoi_mean,
            "val_score": score,
        }

    # ---- the card and the shipped form
    def card(self, result: FitResult) -> dict:
        """The run's model card: data (with the corpus's licence), labels, command and validation figures."""
        corpus = self.corpus_name.lower()
        licence = next((text for key, text in LICENCES.items() if key in corpus), "see the corpus's own licence")
        card = self.data_card(sorted({i.speaker for i in self.train}), len(self.train), len(self.val))
        card["data"].update(corpus=self.corpus_name, licence=licence)
        return {
            **card,
            "synthesis": "source_filter",
            "command": "anoncli " + " ".join(sys.argv[1:])
            if sys.argv and "anoncli" in sys.argv[0]
            else " ".join(sys.argv),
            "validation": {
                "what": "validation speakers anonymized through the inference path (WORLD resynthesis); attacker = "
                "logistic regression on resemblyzer embedding + spectral + prosody statistics trained on the "
                "training speakers' original audio; speaker_cos = resemblyzer cosine original vs anonymized",
                **result.best_metrics,
            },
        }

    def finish(self, result: FitResult) -> dict:
        card = json.loads((result.run.root / "model.json").read_text())
        return {"shipped": str(export_shipped(result.run.best_path, result.run.root / "shipped", card))}


def export_shipped(checkpoint: Path, out_dir: Path, card: dict) -> Path:
    """Write the inference modules of a checkpoint as `model.safetensors` + `card.json` (the shipped form)."""
    state = modelstore.load_model(checkpoint, "cpu")
    names = state.get("inference_modules") or sorted(state["models"])
    tensors = {
        f"{name}.{key}": value.float() if value.is_floating_point() else value
        for name in names
        for key, value in state["models"][name].items()
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, out_dir / "model.safetensors", metadata={"method": state["method"]})
    full = {
        **card,
        "model": {
            "config": state["config"],
            "classes": state["classes"],
            "attribute": state["attribute"],
            "epoch": state.get("epoch"),
            "modules": sorted(names),
        },
    }
    (out_dir / "card.json").write_text(json.dumps(full, indent=2, default=str) + "\n")
    return out_dir / "model.safetensors"
