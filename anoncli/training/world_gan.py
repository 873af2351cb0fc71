"""`anoncli train --method gengan-world | pcmelgan-world`: a bounded residual generator on normalised WORLD
features, trained against informed attackers refit on its own output.

The model of `--method gengan` / `--method pcmelgan` with the `world_norm`
pipeline (`anoncli.methods.world_norm`): explicit pseudo-speaker
normalisation (`anoncli.synthesis.world_norm`, the PCMelGAN "filter" made
explicit), then the paper's generator, 1-D over time
(`anoncli.models.world_nets.WorldResidualGenerator`: a zero-initialised,
bounded residual, so training starts at the normalised output and no frame
moves by more than `bound` standard deviations), then WORLD synthesis.

The private attribute (`--attribute`, default gender) is attacked, in the
loop, by what the evaluation's attackers read, computed differentiably from
the generated features (`attacker_frames`: the envelope's 40-band log-mel,
log-F0, voicing, aperiodicity and level per frame; `utterance_statistics`:
their means and standard deviations over the active frames and voiced
frames, the utterance-level vector a linear attacker reads):

* a frame-level discriminator (1-D CNN with mean and std pooling) updated at
  every step on the current outputs, the source's class as its target;
* a fresh logistic regression (scikit-learn, L2) refit at the start of every
  epoch on the current outputs of every training utterance: a stale
  discriminator is easy to fool, a refit one is not. It reads what the
  evaluation's attacker reads: a resemblyzer speaker embedding (its frozen
  encoder on the envelope's mel power, `EnvelopeSpeakerEmbedding`; off with
  `embedding=no`) and the spectral and prosody statistics.

The generator's loss: both attackers' posteriors pushed to uniform (KL from
the uniform distribution), plus `l1_weight` × the mean absolute change in
standard deviations, plus `envelope_weight` × one minus the correlation of
the one-third octave bands' temporal envelopes with the input's over
384-ms segments of active frames (`envelope_correlation`: STOI's measure of
intelligibility, on the envelope; a change constant over a segment, a formant or level shift, costs
nothing, a change of the envelopes' time course does). The target class of each item is drawn 50/50 with its
pseudo-speaker (`PseudoSpeakers.draw`) and conditions the generator.

Validation (speaker-disjoint: `val_fraction` of the speakers, stratified by
class): the validation utterances are normalised with fixed draws and
generated; `val_informed` is the accuracy of a logistic regression trained
and tested on these outputs' statistics with speaker-disjoint folds (the
informed attacker of the validation speakers), `val_stoi` the STOI (pystoi)
of `stoi_utterances` resynthesised utterances against their original audio,
`val_change` the mean absolute change. The checkpoint kept (`val_score`,
lower is better) is `val_informed` plus `stoi_penalty` × how far STOI falls
below `stoi_floor`.

The held-out speakers (`exclude_speakers`, `exclude_corpus`) are left out of
everything, as in `anoncli train --method world_norm`. The features of every
utterance are analysed once into the run's cache (`RUN/cache/world-features.npz`; the
audio itself only of the validation utterances and the few training ones the speaker
embedding's level reference reads), so a
resumed run reads no audio again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anoncli.errors import AnoncliError
from anoncli.models.world_nets import (
    LEVEL,
    LOG_F0,
    N_MCEP,
    VOICED,
    WorldResidualGenerator,
    frame_features,
    split_features,
)
from anoncli.progress import write as progress_line
from anoncli.training import TrainOptions
from anoncli.training.common import check_split_classes, speaker_split
from anoncli.training.loop import TrainConfig, Trainer, data_fingerprint
from anoncli.training.world_norm import Sampler, excluded_speakers

DEFAULT_ATTRIBUTE = "gender"
# training utterances whose audio sets the speaker embedding's level reference (`reference_log_power`)
REFERENCE_UTTERANCES = 30
N_MELS = 40
ACTIVE_LEVEL = -4.0  # level channel (dB / 10 below the loudest frame): frames within 40 dB are active


@dataclass
class WorldGanConfig(TrainConfig):
    """Settings: the private column (`attribute`), the held-out speakers (`exclude_speakers`,
    `exclude_corpus`), the validation share of the speakers (`val_fraction`); the generator (`width`
    hidden channels, `bound` standard deviations at most, `f0_bound` for log-F0) and its Adam `lr`; the frame discriminator
    (`d_width`, `d_lr`); the loss weights (`adv_weight` frame discriminator, `refit_weight` the epoch's
    refit linear attacker (its L2 `refit_c`), `l1_weight` the change, `envelope_weight` one minus the
    one-third octave bands' temporal envelope correlation with the input over the active frames
    (`envelope_correlation`, STOI's measure on the envelope),
    `speaker_weight` one minus the cosine between the speaker
    embeddings of output and input, PSEGAN's speaker matcher; `embedding` gives the refit attacker the
    output's speaker embedding); training crops of `crop_frames` 5-ms frames; the
    selection (`stoi_floor`, `stoi_penalty`, `stoi_utterances`); the pseudo-speakers' `clip_sigma`; the
    analysis rate `sample_rate`."""

    attribute: str | None = None
    exclude_speakers: list[str] = field(default_factory=list)
    exclude_corpus: str = ""
    val_fraction: float = 0.2
    width: int = 48
    bound: float = 1.0
    f0_bound: float = 0.2
    lr: float = 5e-4
    d_width: int = 64
    d_lr: float = 1e-3
    adv_weight: float = 1.0
    refit_weight: float = 1.0
    l1_weight: float = 0.3
    crop_frames: int = 400
    stoi_floor: float = 0.74
    stoi_penalty: float = 2.0
    stoi_utterances: int = 8
    clip_sigma: float = 2.0
    f0_keep: float = 0.5
    level_keep: float = 0.5
    embedding: bool = True
    envelope_weight: float = 3.0
    refit_c: float = 0.1
    speaker_weight: float = 0.0
    sample_rate: int = 16000

    def check(self) -> None:
        """AnoncliError for a bound or width that is not positive, a val_fraction outside (0, 0.5] or crops under 32 frames."""
        super().check()
        if not self.bound > 0 or self.width < 4 or self.d_width < 4:
            raise AnoncliError("--param bound, width and d_width must be positive (width, d_width at least 4)")
        if not 0 < self.val_fraction <= 0.5:
            raise AnoncliError(f"--param val_fraction={self.val_fraction}: expected a share in (0, 0.5]")
        for name in ("f0_keep", "level_keep"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise AnoncliError(f"--param {name}={getattr(self, name)}: expected a share in [0, 1]")
        if self.crop_frames < 32:
            raise AnoncliError(f"--param crop_frames={self.crop_frames}: at least 32 frames")


PRESETS = {
    "quick": WorldGanConfig(epochs=2, batch_size=4, steps_per_epoch=3, width=8, d_width=8, crop_frames=64, threads=2),
    "default": WorldGanConfig(epochs=30, batch_size=16, steps_per_epoch=60, grad_clip=5.0, threads=2),
}


class FrameAttacker(nn.Module):
    """The in-loop discriminator: (B, C, T) attacker frames -> (B, classes) logits (three strided 1-D
    convolutions, then the mean and std over time of the active frames, then a linear layer)."""

    def __init__(self, channels: int, classes: int, width: int = 64):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv1d(channels, width, 5, stride=2, padding=2),
            nn.LeakyReLU(0.2),
            nn.Conv1d(width, width, 5, stride=2, padding=2),
            nn.LeakyReLU(0.2),
            nn.Conv1d(width, width, 5, padding=2),
            nn.LeakyReLU(0.2),
        )
        self.out = nn.Linear(2 * width, classes)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        h = self.convs(frames)
        return self.out(torch.cat([h.mean(dim=-1), h.std(dim=-1)], dim=1))


class AttackerFeatures(nn.Module):
    """Differentiable attacker evidence from generated frame features (B, FEATURES, T) -> (B, N_MELS + 4, T):
    the envelope's log-mel (the coded envelope decoded by WORLD's linear cepstral decoder, times the
    frame level, through a 40-band mel filterbank), then log-F0, voicing, aperiodicity and level."""

    def __init__(self, sample_rate: int):
        super().__init__()
        import pyworld
        import torchaudio

        from anoncli.synthesis.world_features import fft_size

        size = fft_size(sample_rate)
        basis = np.log(pyworld.decode_spectral_envelope(np.eye(N_MCEP), sample_rate, size))  # (40, bins)
        bank = torchaudio.functional.melscale_fbanks(size // 2 + 1, 60.0, sample_rate / 2, N_MELS, sample_rate)
        self.register_buffer("basis", torch.from_numpy(basis.astype(np.float32)))
        self.register_buffer("bank", bank.float())
        hz = np.arange(size // 2 + 1) * sample_rate / size
        centres = 150.0 * 2.0 ** (np.arange(15) / 3.0)
        octaves = np.stack([(hz >= c * 2 ** (-1 / 6)) & (hz < c * 2 ** (1 / 6)) for c in centres], axis=1)
        self.register_buffer("octaves", torch.from_numpy(octaves.astype(np.float32)))  # (bins, 15)

    def power(self, x: torch.Tensor) -> torch.Tensor:
        """(B, FEATURES, T) -> (B, T, bins) envelope power (relative to the loudest frame's level)."""
        log_env = torch.einsum("bct,cf->btf", x[:, :N_MCEP], self.basis)
        log_env = log_env - torch.logsumexp(log_env, dim=-1, keepdim=True) + np.log(log_env.shape[-1])
        level = x[:, LEVEL] * np.log(10.0)  # dB / 10 -> ln power
        return torch.exp(log_env + level[..., None])

    def third_octave(self, power: torch.Tensor) -> torch.Tensor:
        """(B, T, bins) power -> (B, 15, T) one-third octave band magnitudes (centres 150 Hz · 2^(k/3), STOI's bands)."""
        return torch.sqrt(power @ self.octaves + 1e-10).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mel = torch.log(self.power(x) @ self.bank + 1e-8).transpose(1, 2)
        return torch.cat([mel / 10.0, x[:, LOG_F0 : LEVEL + 1]], dim=1)


class EnvelopeSpeakerEmbedding(nn.Module):
    """resemblyzer's frozen encoder (`anoncli.models.speaker.MelSpeakerEncoder`) on the envelope power of
    generated frames: (B, T, bins) -> (B, 256) L2-normalised, differentiable. Each item's mel power is
    scaled so that its active frames' mean log power is `reference` (that of real speech normalised to
    -30 dBFS, as resemblyzer normalises its input); long items are cut into resemblyzer's 1.6 s partials
    (50 % overlap) whose embeddings are averaged and normalised again, as `embed_utterance` does."""

    PARTIAL = 160  # 10-ms frames

    def __init__(self, sample_rate: int, reference: float):
        super().__init__()
        from anoncli.models.speaker import MelSpeakerEncoder
        from anoncli.synthesis.world_features import FRAME_PERIOD_MS, fft_size

        hop = int(round(sample_rate * FRAME_PERIOD_MS / 1000.0))
        self.encoder = MelSpeakerEncoder.for_power(sample_rate, fft_size(sample_rate), hop)
        self.reference = float(reference)

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        mel = self.encoder.power_input(power.transpose(1, 2))  # (B, F, 40)
        log_total = torch.log(mel.sum(dim=-1) + 1e-10)
        active = (log_total > log_total.max(dim=1, keepdim=True).values - 40.0 / 10.0 * np.log(10.0)).float()
        mean = (log_total * active).sum(1) / active.sum(1).clamp_min(1.0)
        mel = mel * torch.exp(self.reference - mean)[:, None, None]
        frames = mel.shape[1]
        if frames <= int(1.5 * self.PARTIAL):
            return self.encoder.embed_frames(mel)
        starts = list(range(0, frames - self.PARTIAL + 1, self.PARTIAL // 2))
        parts = torch.stack([self.encoder.embed_frames(mel[:, s : s + self.PARTIAL]) for s in starts], dim=1)
        mean_embedding = parts.mean(dim=1)
        return mean_embedding / mean_embedding.norm(dim=1, keepdim=True).clamp_min(1e-8)


def reference_log_power(waves: list[np.ndarray]) -> float:
    """The mean, over `waves` (16 kHz), of the active frames' mean log mel power of the wave normalised
    to -30 dBFS: resemblyzer's input level (its `normalize_volume` target), for `EnvelopeSpeakerEmbedding`."""
    from anoncli.scoring.features import mel_power

    values = []
    for wave in waves:
        rms_db = 10.0 * np.log10(np.mean(np.square(wave, dtype=np.float64)) + 1e-12)
        mel = mel_power(wave * 10.0 ** ((-30.0 - rms_db) / 20.0), 40)
        log_total = np.log(mel.sum(axis=1) + 1e-10)
        active = log_total > log_total.max() - 4.0 * np.log(10.0)
        values.append(float(log_total[active].mean()))
    return float(np.mean(values)) if values else 0.0


def envelope_correlation(
    out: torch.Tensor, ref: torch.Tensor, active: torch.Tensor | None = None, segment: int = 77
) -> torch.Tensor:
    """STOI's intermediate intelligibility measure (Taal et al., 2011) on band envelopes: the mean
    correlation, per band and 384-ms segment (77 frames of 5 ms), between the temporal envelopes of `out`
    and `ref` (B, bands, T; STOI uses one-third octave band magnitudes, `AttackerFeatures.third_octave`).
    `active` (B, T) 0/1 marks the frames that count (STOI drops silent frames); a segment counts with its
    share of active frames, a segment less than half active not at all. A change constant over a segment
    (a formant or level shift) does not lower it; a change of the envelopes' time course does. Differentiable."""
    frames = out.shape[-1] // segment * segment
    if frames == 0:
        segment, frames = out.shape[-1], out.shape[-1]
    if active is None:
        active = torch.ones(out.shape[0], out.shape[-1], device=out.device)
    w = active[:, None, :frames].unfold(-1, segment, segment)  # (B, 1, S, segment)
    a = out[..., :frames].unfold(-1, segment, segment)
    b = ref[..., :frames].unfold(-1, segment, segment)
    share = w.mean(dim=-1)  # (B, 1, S)
    norm_w = w / w.sum(dim=-1, keepdim=True).clamp_min(1.0)
    a = (a - (a * norm_w).sum(-1, keepdim=True)) * w
    b = (b - (b * norm_w).sum(-1, keepdim=True)) * w
    r = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-6)  # (B, bands, S)
    weight = (share >= 0.5).float() * share
    weight = weight.expand_as(r)
    return (r * weight).sum() / weight.sum().clamp_min(1e-6)


def utterance_statistics(frames: torch.Tensor) -> torch.Tensor:
    """(B, N_MELS + 4, T) attacker frames -> (B, 4 * N_MELS + 6) statistics: log-mel mean and std over
    the active frames and those of its frame-to-frame change (the evaluation's spectral statistics), log-F0
    mean and std over the voiced frames, the voiced share, aperiodicity mean and std, level std.
    Differentiable."""
    batch, _, frames_n = frames.shape
    valid = torch.ones(batch, frames_n, device=frames.device)
    level = frames[:, N_MELS + 3]
    active = valid * (level > ACTIVE_LEVEL).float()
    voiced = valid * frames[:, N_MELS + 1]

    def moments(values: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = weight / weight.sum(dim=-1, keepdim=True).clamp_min(1.0)
        if values.dim() == 3:
            w = w[:, None]
        mean = (values * w).sum(dim=-1)
        var = ((values - mean[..., None]) ** 2 * w).sum(dim=-1)
        return mean, torch.sqrt(var + 1e-6)

    mel_mean, mel_std = moments(frames[:, :N_MELS], active)
    both = active[:, 1:] * active[:, :-1]
    delta_mean, delta_std = moments(frames[:, :N_MELS, 1:] - frames[:, :N_MELS, :-1], both)
    f0_mean, f0_std = moments(frames[:, N_MELS], voiced)
    bap_mean, bap_std = moments(frames[:, N_MELS + 2], active)
    _, level_std = moments(level, valid)
    share = voiced.sum(-1) / valid.sum(-1).clamp_min(1.0)
    return torch.cat(
        [
            mel_mean,
            mel_std,
            delta_mean,
            delta_std,
            torch.stack([f0_mean, f0_std, share, bap_mean / 10.0, bap_std / 10.0, level_std], 1),
        ],
        1,
    )


@dataclass
class _Utterance:
    speaker: str
    label: int
    # pseudo-speaker normalisation: the envelope whitened and log-F0 standardised (0 unvoiced) with the
    # utterance's own statistics, (T, 40) and (T,), coloured per draw; None for the speaker normalisation
    z: np.ndarray | None
    f0_z: np.ndarray | None
    voiced: np.ndarray  # (T,) bool
    bap: np.ndarray  # (T, 1)
    level_db: np.ndarray  # (T,)
    frames: torch.Tensor | None = None  # (FEATURES, T) normalised frames, when they do not depend on a draw

    @property
    def n_frames(self) -> int:
        return len(self.level_db)


def _whiten(features, full: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The envelope whitened (standardised, decorrelated) and log-F0 standardised with the utterance's own
    statistics: what `impose` does before colouring with the target's."""
    from anoncli.synthesis.world_norm import matrix_power, utterance_stats

    own = utterance_stats(features)
    z = (features.mcep - own.mcep_mean) / own.mcep_std
    if full and own.mcep_corr is not None:
        z = z @ matrix_power(own.mcep_corr, -0.5)
    f0 = np.zeros_like(features.log_f0)
    if own.f0_mean is not None:
        f0 = np.where(features.voiced, (features.log_f0 - own.f0_mean) / own.f0_std, 0.0)
    return z, f0


class WorldGanTrainer(Trainer):
    """`anoncli train --method gengan-world`: GenGAN's U-Net (with noise) as a bounded residual on normalised
    WORLD features, against informed attackers (see the module text). Writes a `gengan` model."""

    method = "gengan"
    name = "gengan-world"
    body = "gengan"
    # "pseudo": a pseudo-speaker drawn per item (gender, identity); "speaker": the speaker's own pooled
    # statistics with flattened contours (emotion; `flatten_to_speaker`)
    normalisation = "pseudo"
    default_attribute = DEFAULT_ATTRIBUTE
    config_class = WorldGanConfig
    presets = PRESETS
    default_preset = "default"
    selection = ("val_score", "min")

    def __init__(self, options: TrainOptions, config: WorldGanConfig | None = None):
        super().__init__(options, config)
        attribute = self.config.attribute or self.default_attribute
        self.config = dataclasses.replace(self.config, attribute=attribute)
        self.attribute = attribute

    # ------------------------------------------------------------------ data
    def setup(self) -> None:
        c, options = self.config, self.options
        corpus = options.open_corpus()
        if corpus.label_columns and self.attribute not in corpus.label_columns:
            raise AnoncliError(
                f"{options.corpus}: no {self.attribute!r} label column (columns: {', '.join(corpus.label_columns)})"
            )
        self.excluded = excluded_speakers(c, options)
        held = set(self.excluded)
        utts = sorted(
            (u for u in corpus.utterances if u.speaker and u.labels.get(self.attribute) and str(u.speaker) not in held),
            key=lambda u: u.utt_id,
        )
        if not utts:
            raise AnoncliError(f"{options.corpus}: no utterance with a speaker and a {self.attribute!r} label")
        train, val, self.val_speakers = speaker_split(utts, None, c.val_fraction, c.seed, stratify_label=self.attribute)
        check_split_classes(train, val, lambda u: u.labels[self.attribute], self.attribute)
        self.classes = sorted({str(u.labels[self.attribute]) for u in utts})
        self.data_fingerprint = data_fingerprint(utts)
        reference_ids = [u.utt_id for u in train[:REFERENCE_UTTERANCES]]
        analysed = self._analyse(train + val, keep_waves={u.utt_id for u in val} | set(reference_ids))
        self.speaker_stats = self._speaker_stats(train + val, analysed) if self.normalisation == "speaker" else {}
        self.train_items = [self._item(u, analysed[u.utt_id]) for u in train if u.utt_id in analysed]
        self.val_items = [self._item(u, analysed[u.utt_id]) for u in val if u.utt_id in analysed]
        self.val_ids = [u.utt_id for u in val if u.utt_id in analysed]
        self.val_waves = {utt_id: analysed[utt_id][1] for utt_id in self.val_ids[: c.stoi_utterances]}
        if self.normalisation == "pseudo":
            self._fit_sampler(train, analysed)
        cond = len(self.classes) if self.normalisation == "pseudo" else 0
        self.generator = WorldResidualGenerator(self.body, cond, c.width, c.bound, c.f0_bound).to(self.device)
        self.attack = AttackerFeatures(c.sample_rate).to(self.device)
        self.embedder = None
        if c.embedding:
            waves = [analysed[utt_id][1] for utt_id in reference_ids if utt_id in analysed]
            self.embedder = EnvelopeSpeakerEmbedding(c.sample_rate, reference_log_power(waves)).to(self.device)
        self.disc = FrameAttacker(N_MELS + 4, len(self.classes), c.d_width).to(self.device)
        self._set_scaling()
        self.g_opt = torch.optim.Adam(self.generator.parameters(), lr=c.lr, betas=(0.5, 0.9))
        self.d_opt = torch.optim.Adam(self.disc.parameters(), lr=c.d_lr, betas=(0.5, 0.9))
        self.linear: dict[str, torch.Tensor] | None = None
        if c.progress:
            progress_line(
                f"{self.name}: {len(self.train_items)} training / {len(self.val_items)} validation utterances "
                f"({len({i.speaker for i in self.train_items})} / {len(self.val_speakers)} speakers), "
                f"{len(self.excluded)} held-out speakers excluded"
            )

    def _analyse(self, utts: list, keep_waves: set[str]) -> dict:
        """utt_id -> (CodedWorld, wave or None) for every utterance, cached in RUN/cache/world-features.npz;
        the wave is kept (and cached) only for the ids in `keep_waves`."""
        from anoncli.synthesis import world_features
        from anoncli.synthesis.world_features import CodedWorld
        from anoncli.training.common import resampled_waves

        rate = self.config.sample_rate
        cache = self.run.cache_dir / "world-features.npz" if self.run is not None else None
        stored: dict = {}
        if cache is not None and cache.exists():
            with np.load(cache, allow_pickle=False) as data:
                for key in data.files:
                    utt_id, _, part = key.rpartition("/")
                    stored.setdefault(utt_id, {})[part] = data[key]
        out, fresh = {}, {}
        wanted = {u.utt_id for u in utts}
        needed = [u for u in utts if u.utt_id not in stored]
        for utt, wave in resampled_waves(needed, rate, "WORLD analysis", self.config.progress) if needed else []:
            if len(wave) < world_features.min_samples(rate) * 40:
                continue
            f = world_features.analyse(wave.numpy(), rate)
            fresh[utt.utt_id] = {
                "mcep": f.mcep,
                "level_db": f.level_db,
                "log_f0": f.log_f0,
                "voiced": f.voiced,
                "bap": f.bap,
                "length": np.asarray(len(wave)),
                **({"wave": wave.numpy().astype(np.float32)} if utt.utt_id in keep_waves else {}),
            }
        stored.update(fresh)
        if fresh and cache is not None:
            from anoncli.atomic import atomic_path

            with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, **{f"{k}/{p}": v for k, parts in stored.items() for p, v in parts.items()})
        for utt_id, parts in stored.items():
            if utt_id not in wanted:
                continue
            features = CodedWorld(
                parts["mcep"],
                parts["level_db"],
                parts["log_f0"],
                parts["voiced"].astype(bool),
                parts["bap"],
                rate,
                int(parts["length"]),
            )
            out[utt_id] = (features, parts.get("wave"))
        return out

    def _speaker_stats(self, utts: list, analysed: dict) -> dict:
        """speaker -> `Stats` pooled over all their analysed utterances (the emotion normalisation's target)."""
        from collections import defaultdict

        from anoncli.synthesis.world_norm import pool_stats

        per_speaker = defaultdict(list)
        for u in utts:
            if u.utt_id in analysed:
                per_speaker[str(u.speaker)].append(analysed[u.utt_id][0])
        return {s: pool_stats(items) for s, items in sorted(per_speaker.items())}

    def _item(self, utt, analysed) -> _Utterance:
        features, _ = analysed
        z = f0 = frames = None
        if self.normalisation == "pseudo":  # whitened once; each draw colours it (`normalised`)
            z, f0 = (a.astype(np.float32) for a in _whiten(features))
        else:
            from anoncli.synthesis.world_norm import flatten_to_speaker

            c = self.config
            flat = flatten_to_speaker(features, self.speaker_stats[str(utt.speaker)], c.f0_keep, c.level_keep)
            frames = frame_features(flat.mcep, flat.log_f0, flat.voiced, flat.bap, flat.level_db)
            features = flat  # its level is the speaker's (the synthesis reads the item's level)
        return _Utterance(
            str(utt.speaker),
            self.classes.index(str(utt.labels[self.attribute])),
            z,
            f0,
            features.voiced,
            features.bap[:, :1].astype(np.float32),
            features.level_db.astype(np.float32),
            frames,
        )

    def _fit_sampler(self, train: list, analysed: dict) -> None:
        from collections import defaultdict

        from anoncli.synthesis.world_norm import fit_pseudo_speakers, matrix_power, pool_stats

        per_speaker, genders = defaultdict(list), {}
        for u in train:
            if u.utt_id in analysed:
                per_speaker[str(u.speaker)].append(analysed[u.utt_id][0])
                genders[str(u.speaker)] = str(u.labels[self.attribute])
        stats = {s: pool_stats(items) for s, items in sorted(per_speaker.items())}
        try:
            self.pseudo = fit_pseudo_speakers(stats, genders, tuple(self.classes), self.config.clip_sigma)
        except ValueError as err:
            raise AnoncliError(f"{self.options.corpus}: {err}") from None
        self.sampler = Sampler(len(self.classes))
        self.sampler.load_arrays(self.pseudo.arrays())
        self.colour = torch.from_numpy(
            np.stack([matrix_power(c, 0.5) for c in self.pseudo.corrs]).astype(np.float32)
        )  # (G, 40, 40)

    # ------------------------------------------------------------------ normalisation, batches
    def normalised(self, item: _Utterance, seed: int, start: int = 0, frames: int | None = None):
        """(FEATURES, T) normalised frames of `item` coloured with the pseudo-speaker of `seed`, and its class
        index (speaker normalisation: the item's precomputed frames, class 0)."""
        if item.frames is not None:
            end = item.frames.shape[-1] if frames is None else start + frames
            return item.frames[:, start:end], 0
        gender, target = self.pseudo.draw(seed)
        g = self.classes.index(gender)
        end = item.n_frames if frames is None else start + frames
        z = torch.from_numpy(item.z[start:end]) @ self.colour[g]
        mcep = z.numpy() * target.mcep_std + target.mcep_mean
        f0 = np.where(item.voiced[start:end], item.f0_z[start:end] * target.f0_std + target.f0_mean, 0.0)
        x = frame_features(mcep, f0, item.voiced[start:end], item.bap[start:end], item.level_db[start:end])
        return x, g

    def _set_scaling(self) -> None:
        """The generator's standardisation from the training items' normalised frames; log-F0's mean and
        std are the voiced frames' (over all frames its std would be the voiced/unvoiced jump)."""
        xs = [self.normalised(item, 1000 + i)[0] for i, item in enumerate(self.train_items[:200])]
        frames = torch.cat(xs, dim=1)
        mean, std = frames.mean(dim=1), frames.std(dim=1)
        voiced = frames[LOG_F0][frames[VOICED] > 0]
        if voiced.numel() > 1:
            mean[LOG_F0], std[LOG_F0] = voiced.mean(), voiced.std()
        self.generator.set_scaling(mean, std)

    def batches(self, epoch: int):
        self._refit(epoch)
        c = self.config
        for _ in range(c.steps_per_epoch or 50):
            picks = torch.randint(len(self.train_items), (c.batch_size,), generator=self.rng).tolist()
            xs, targets, labels = [], [], []
            for index in picks:
                item = self.train_items[index]
                crop = min(c.crop_frames, item.n_frames)
                start = int(torch.randint(item.n_frames - crop + 1, (1,), generator=self.rng))
                seed = int(torch.randint(1 << 31, (1,), generator=self.rng))
                x, g = self.normalised(item, seed, start, crop)
                if crop < c.crop_frames:
                    x = F.pad(x[None], (0, c.crop_frames - crop), mode="replicate")[0]
                xs.append(x)
                targets.append(g)
                labels.append(item.label)
            noise = torch.randn(len(xs), 1, c.crop_frames, generator=self.rng)
            yield torch.stack(xs), torch.tensor(targets), torch.tensor(labels), noise

    # ------------------------------------------------------------------ attackers
    def _generate(self, x: torch.Tensor, targets: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        cond = F.one_hot(targets, len(self.classes)).float().to(self.device) if self.generator.cond else None
        return self.generator(x.to(self.device), cond, None if noise is None else noise.to(self.device))

    def evidence(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Generated (B, FEATURES, T) -> the attacker frames (B, N_MELS + 4, T) and the utterance vector the
        refit attacker reads: the speaker embedding (with `embedding`) and `utterance_statistics`, as the
        evaluation's attacker reads a resemblyzer embedding and spectral and prosody statistics."""
        frames = self.attack(out)
        stats = utterance_statistics(frames)
        if self.embedder is not None:
            stats = torch.cat([self.embedder(self.attack.power(out)), stats], dim=1)
        return frames, stats

    @torch.no_grad()
    def _statistics(self, items: list[_Utterance], seeds: list[int], max_frames: int = 1600) -> np.ndarray:
        """The refit attacker's vectors of the outputs of `items` (at most their first `max_frames`, 8 s)."""
        rows = []
        for item, seed in zip(items, seeds):
            x, g = self.normalised(item, seed, 0, min(item.n_frames, max_frames))
            noise = torch.randn(1, 1, x.shape[-1], generator=torch.Generator().manual_seed(seed))
            out = self._generate(x[None], torch.tensor([g]), noise)
            rows.append(self.evidence(out)[1].cpu().numpy()[0])
        return np.stack(rows)

    def _refit(self, epoch: int) -> None:
        """A fresh logistic regression on the statistics of the current outputs of every training utterance."""
        from sklearn.linear_model import LogisticRegression

        was = self.generator.training
        self.generator.eval()
        seeds = [epoch * 100003 + i for i in range(len(self.train_items))]
        x = self._statistics(self.train_items, seeds)
        self.generator.train(was)
        y = np.asarray([item.label for item in self.train_items])
        mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
        model = LogisticRegression(C=self.config.refit_c, max_iter=500).fit((x - mean) / scale, y)
        coef = model.coef_ if len(self.classes) > 2 else np.concatenate([-model.coef_, model.coef_]) / 2
        intercept = model.intercept_ if len(self.classes) > 2 else np.array([-1, 1]) * model.intercept_[0] / 2
        self.linear = {
            "mean": torch.from_numpy(mean).float(),
            "scale": torch.from_numpy(scale).float(),
            "weight": torch.from_numpy(coef).float(),
            "bias": torch.from_numpy(intercept).float(),
        }
        self.refit_accuracy = float(model.score((x - mean) / scale, y))

    def _linear_logits(self, stats: torch.Tensor) -> torch.Tensor:
        lin = {k: v.to(stats.device) for k, v in self.linear.items()}
        return ((stats - lin["mean"]) / lin["scale"]) @ lin["weight"].T + lin["bias"]

    def modules(self) -> dict[str, nn.Module]:
        sampler = {"sampler": self.sampler} if self.normalisation == "pseudo" else {}
        return {"generator": self.generator, **sampler, "discriminator": self.disc}

    def inference_modules(self) -> list[str]:
        return ["generator", "sampler"] if self.normalisation == "pseudo" else ["generator"]

    def optimizers(self):
        return {"generator": self.g_opt, "discriminator": self.d_opt}

    def train_step(self, batch) -> dict[str, float]:
        c = self.config
        x, targets, labels, noise = batch
        labels = labels.to(self.device)
        out = self._generate(x, targets, noise if self.body == "gengan" else None)
        evidence, vector = self.evidence(out)
        d_loss = F.cross_entropy(self.disc(evidence.detach()), labels)
        self.optimize("discriminator", d_loss)
        uniform = -F.log_softmax(self.disc(evidence), dim=1).mean(dim=1)
        refit = -F.log_softmax(self._linear_logits(vector), dim=1).mean(dim=1)
        x = x.to(self.device)
        change = ((out - x).abs() / self.generator.std[:, None]).mean()
        active = (x[:, LEVEL] > ACTIVE_LEVEL).float()
        envelope_kept = envelope_correlation(
            self.attack.third_octave(self.attack.power(out)), self.attack.third_octave(self.attack.power(x)), active
        )
        g_loss = c.adv_weight * uniform.mean() + c.refit_weight * refit.mean() + c.l1_weight * change
        g_loss = g_loss + c.envelope_weight * (1.0 - envelope_kept)
        figures = {}
        if c.speaker_weight and self.embedder is not None:  # PSEGAN's speaker matcher: keep the input's speaker
            with torch.no_grad():
                target = self.embedder(self.attack.power(x))
            kept = (vector[:, : target.shape[1]] * target).sum(dim=1).mean()
            g_loss = g_loss + c.speaker_weight * (1.0 - kept)
            figures["speaker_cosine"] = kept.item()
        self.optimize("generator", g_loss)
        return {
            "d_loss": d_loss.item(),
            "g_adv": uniform.mean().item(),
            "g_refit": refit.mean().item(),
            "change": change.item(),
            "envelope_r": envelope_kept.item(),
            **figures,
        }

    def _val_features(self, item: _Utterance, out: torch.Tensor, wave_length: int):
        """The CodedWorld of a generated (FEATURES, T) item, for synthesis."""
        from anoncli.synthesis.world_features import CodedWorld

        parts = split_features(out)
        level = item.level_db.astype(np.float64)
        return CodedWorld(
            parts["mcep"], level, parts["log_f0"], item.voiced, parts["bap"], self.config.sample_rate, wave_length
        )

    def validate(self) -> dict[str, float]:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GroupKFold, cross_val_score
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        c = self.config
        draws = 3
        items = [item for item in self.val_items for _ in range(draws)]
        seeds = [7919 * i + d for i in range(len(self.val_items)) for d in range(draws)]
        x = self._statistics(items, seeds)
        y = np.asarray([item.label for item in items])
        groups = np.asarray([item.speaker for item in items])
        folds = min(5, len(set(groups)))
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=500))
        informed = float(np.mean(cross_val_score(model, x, y, groups=groups, cv=GroupKFold(folds))))
        stoi, change = self._stoi()
        score = informed + c.stoi_penalty * max(0.0, c.stoi_floor - stoi)
        return {
            "val_informed": 100.0 * informed,
            "val_stoi": stoi,
            "val_change": change,
            "val_refit_train": 100.0 * getattr(self, "refit_accuracy", float("nan")),
            "val_score": score,
        }

    def _stoi(self) -> tuple[float, float]:
        from pystoi import stoi as pystoi

        from anoncli.synthesis import world_features

        scores, changes = [], []
        for index, utt_id in enumerate(self.val_ids[: len(self.val_waves)]):
            item, wave = self.val_items[index], self.val_waves[utt_id]
            x, g = self.normalised(item, 31 + index)
            noise = torch.randn(1, 1, x.shape[-1], generator=torch.Generator().manual_seed(31 + index))
            out = self._generate(x[None], torch.tensor([g]), noise)[0].cpu()
            changes.append(float(((out - x).abs() / self.generator.std.cpu()[:, None]).mean()))
            audio = world_features.synthesize(self._val_features(item, out, len(wave)))
            scores.append(float(pystoi(wave, audio, self.config.sample_rate)))
        return (float(np.mean(scores)) if scores else float("nan")), (float(np.mean(changes)) if changes else 0.0)

    def extra_state(self) -> dict:
        return {"linear": self.linear, "refit_accuracy": getattr(self, "refit_accuracy", None)}

    def load_extra_state(self, state: dict) -> None:
        self.linear = state.get("linear")
        if state.get("refit_accuracy") is not None:
            self.refit_accuracy = float(state["refit_accuracy"])

    def model_info(self) -> dict:
        from anoncli.methods.world_norm import model_config

        c = self.config
        config = {**model_config(c.sample_rate, "full", c.clip_sigma), "generator": self.generator.config()}
        if self.normalisation == "speaker":
            config.update(normalisation="speaker", f0_keep=c.f0_keep, level_keep=c.level_keep)
        return {
            "config": config,
            "classes": list(self.classes),
            "attribute": self.attribute,
        }

    def card(self, result) -> dict:
        return {
            "data": {
                "corpus": str(self.options.corpus),
                "attribute": self.attribute,
                "train_speakers": sorted({i.speaker for i in self.train_items}),
                "validation_speakers": list(self.val_speakers),
                "excluded_speakers": list(self.excluded),
            },
            "labels": {"attribute": self.attribute, "classes": list(self.classes)},
        }


class PCMelGanWorldTrainer(WorldGanTrainer):
    """`anoncli train --method pcmelgan-world`: PCMelGAN's generator (a residual stack conditioned on the sampled
    class; the normalisation is its filter) on normalised WORLD features. Writes a `pcmelgan` model."""

    method = "pcmelgan"
    name = "pcmelgan-world"
    body = "pcmelgan"


class PSEGANWorldTrainer(WorldGanTrainer):
    """`anoncli train --method psegan-world`: PSEGAN's gated dilated bottleneck on WORLD features normalised to
    each speaker's own pooled statistics with flattened F0 and level contours (`flatten_to_speaker`: the
    speaker is kept, the emotion's utterance-level cues removed), against emotion attackers. Writes a
    `psegan` model, which `anonymize` runs in two passes (the speakers' statistics first)."""

    method = "psegan"
    name = "psegan-world"
    body = "psegan"
    normalisation = "speaker"
    default_attribute = "emotion"
    presets = {
        "quick": dataclasses.replace(PRESETS["quick"], speaker_weight=1.0, stoi_floor=0.8),
        "default": dataclasses.replace(PRESETS["default"], speaker_weight=1.0, stoi_floor=0.8),
    }
