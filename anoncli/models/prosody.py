"""The prosody side of the source-filter GANs: utterance statistics, the prosody head and its transforms.

Per utterance the WORLD analysis gives a log-F0 contour (natural log of Hz,
voiced frames only), a frame-energy contour (dB) and the envelope's log-mel,
all on 10 ms frames (`anoncli.synthesis.source_filter`).

* `utterance_stats` -> STATS_DIM numbers, the evidence `anoncli evaluate`'s
  prosody features carry: log-F0 mean, std, 10/50/90th percentiles over voiced
  frames; energy relative to the loudest frame, mean, std, 10/50/90th
  percentiles over active frames; the voiced fraction. Differentiable in the
  contours (percentiles through a sort), so discriminators can look at them.
* `ProsodyHead`: (normalised stats, target class, noise z) -> four bounded
  numbers: a log-F0 shift, a log-F0 range scale (log), an energy range scale
  (log) and a formant warp (log). Its last layer starts at zero: a new head
  is the identity transform.
  An utterance with no voiced frame gets the training mean in place of its
  log-F0 statistics (`ProsodyHead.without_f0`).
* `apply_prosody`: the new log-F0 contour  m + shift + exp(a) (log F0 - m)
  (m = the utterance's median log-F0; a < 0 flattens the contour) and the
  energy change in dB, (exp(b) - 1) (E - median E), clamped to
  [-30, +6] dB so silence is not amplified much.
* `warp_logmel`: a formant warp of a log-mel along its bands (the envelope
  read at f / warp), matching `source_filter.warp_bins` on WORLD's bins.
"""

from __future__ import annotations

import torch
from torch import nn

STATS_DIM = 11
# the log-F0 statistics (mean, std, 10/50/90th percentiles) among the STATS_DIM numbers
F0_STATS = slice(0, 5)
PROSODY_OUTPUTS = ("f0_shift", "f0_log_scale", "energy_log_scale", "log_warp")
NOISE_DIM = 4
ACTIVE_RANGE_DB = 40.0
MAX_GAIN_DB, MIN_GAIN_DB = 6.0, -30.0


def _percentiles(values: torch.Tensor, qs=(0.1, 0.5, 0.9)) -> list[torch.Tensor]:
    ordered, _ = torch.sort(values)
    n = ordered.shape[0]
    out = []
    for q in qs:
        pos = q * (n - 1)
        low = int(pos)
        high = min(low + 1, n - 1)
        frac = pos - low
        out.append(ordered[low] * (1 - frac) + ordered[high] * frac)
    return out


def _summary(values: torch.Tensor) -> list[torch.Tensor]:
    if values.numel() == 0:
        zero = values.new_zeros(())
        return [zero] * 5
    std = values.std(unbiased=False) if values.numel() > 1 else values.new_zeros(())
    return [values.mean(), std, *_percentiles(values)]


def active_frames(energy_db: torch.Tensor) -> torch.Tensor:
    """Frames within ACTIVE_RANGE_DB of the loudest: (T,) bool."""
    return energy_db > energy_db.max() - ACTIVE_RANGE_DB


def utterance_stats(
    log_f0: torch.Tensor, voiced: torch.Tensor, energy_db: torch.Tensor, active: torch.Tensor | None = None
) -> torch.Tensor:
    """(T,) log-F0 (natural log Hz), (T,) voiced mask, (T,) frame energy dB -> (STATS_DIM,) statistics.

    `active` defaults to the frames within ACTIVE_RANGE_DB of the loudest frame of `energy_db`.
    """
    if active is None:
        active = active_frames(energy_db.detach())
    energy = energy_db[active]
    relative = energy - energy.max() if energy.numel() else energy
    voiced_fraction = voiced.float().mean() if voiced.numel() else log_f0.new_zeros(())
    return torch.stack(_summary(log_f0[voiced]) + _summary(relative) + [voiced_fraction.to(log_f0)])


def apply_prosody(
    log_f0: torch.Tensor, voiced: torch.Tensor, energy_db: torch.Tensor, params: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply one utterance's prosody params (4,) -> (new log-F0 (T,), energy gain in dB (T,)).

    Unvoiced frames keep their (meaningless) log-F0 value; the caller keeps them unvoiced.
    """
    shift, f0_log_scale, energy_log_scale = params[0], params[1], params[2]
    if bool(voiced.any()):
        median = torch.median(log_f0[voiced].detach())
        new_log_f0 = torch.where(voiced, median + shift + torch.exp(f0_log_scale) * (log_f0 - median), log_f0)
    else:
        new_log_f0 = log_f0
    active = active_frames(energy_db.detach())
    energy_median = torch.median(energy_db[active].detach()) if bool(active.any()) else energy_db.detach().median()
    gain = ((torch.exp(energy_log_scale) - 1.0) * (energy_db - energy_median)).clamp(MIN_GAIN_DB, MAX_GAIN_DB)
    return new_log_f0, gain


class ProsodyHead(nn.Module):
    """(B, STATS_DIM) stats, (B,) target class, (B, NOISE_DIM) noise -> (B, 4) bounded prosody params.

    `bounds` caps each output (tanh times the bound): e.g. a log-F0 shift of
    at most 0.8 (a factor 2.2) and a warp of at most 0.2 (a factor 1.22).
    The input normalisation (`stats_mean`, `stats_std`) is set from the
    training data and saved with the weights.
    """

    def __init__(self, num_classes: int, bounds=(0.8, 1.0, 1.0, 0.2), hidden: int = 64, embed_dim: int = 8):
        super().__init__()
        self.register_buffer("stats_mean", torch.zeros(STATS_DIM))
        self.register_buffer("stats_std", torch.ones(STATS_DIM))
        self.register_buffer("bounds", torch.tensor([float(b) for b in bounds]))
        self.embedding = nn.Embedding(num_classes, embed_dim)
        self.net = nn.Sequential(
            nn.Linear(STATS_DIM + embed_dim + NOISE_DIM, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, len(PROSODY_OUTPUTS)),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def normalise(self, stats: torch.Tensor) -> torch.Tensor:
        """Stats (B, STATS_DIM) standardised with the training mean and std saved with the weights."""
        return (stats - self.stats_mean) / self.stats_std

    def without_f0(self, stats: torch.Tensor) -> torch.Tensor:
        """Stats (..., STATS_DIM) of an utterance with no voiced frame: its log-F0 statistics (zeros, as
        `utterance_stats` gives them) replaced by the training mean, so the head reads "no evidence"
        rather than an F0 of 1 Hz; the energy statistics and the voiced fraction (0) are kept."""
        stats = stats.clone()
        stats[..., F0_STATS] = self.stats_mean[F0_STATS].to(stats)
        return stats

    def forward(self, stats: torch.Tensor, label: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.normalise(stats), self.embedding(label.long()), z.to(stats)], dim=1)
        return self.bounds * torch.tanh(self.net(x))


def prosody_noise(seed: int) -> torch.Tensor:
    """The per-utterance head noise (1, NOISE_DIM) ~ N(0, 1), drawn from `seed`."""
    generator = torch.Generator()
    generator.manual_seed(int(seed) ^ 0x9E37)
    return torch.randn(1, NOISE_DIM, generator=generator)


def band_centres(filterbank: torch.Tensor) -> torch.Tensor:
    """(n_freqs, n_mels) filterbank -> (n_mels,) centre of each band as a fractional bin index (centroid)."""
    bins = torch.arange(filterbank.shape[0], dtype=torch.float32)
    weights = filterbank.float()
    return (weights * bins[:, None]).sum(0) / weights.sum(0).clamp(min=1e-8)


def warp_logmel(logmel: torch.Tensor, log_warp: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(B, n_mels, F) log-mel, (B,) log warp, (n_mels,) band centres -> each band read at centre / warp.

    Linear interpolation between neighbouring bands (held at the edges); differentiable in `log_warp`.
    """
    centres = centres.to(logmel)
    query = centres[None, :] / torch.exp(log_warp)[:, None]  # (B, n_mels)
    query = torch.maximum(torch.minimum(query, centres[-1]), centres[0])
    upper = torch.searchsorted(centres, query.detach().contiguous()).clamp(1, centres.shape[0] - 1)
    lower = upper - 1
    frac = ((query - centres[lower]) / (centres[upper] - centres[lower])).clamp(0, 1)
    take = lambda index: torch.gather(logmel, 1, index[:, :, None].expand(-1, -1, logmel.shape[-1]))  # noqa: E731
    return take(lower) * (1 - frac[:, :, None]) + take(upper) * frac[:, :, None]
