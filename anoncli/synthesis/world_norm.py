"""Explicit, training-free normalisation of compact WORLD features (`anoncli.synthesis.world_features`).

The "filter" of PCMelGAN (Ericsson et al., 2020) made explicit: remove an
utterance's statistics and impose target statistics that do not depend on
the source.

Statistics (`Stats`): the per-dimension mean and standard deviation and the
correlation matrix of the coded envelope (`mcep`, 40 dims) over the active frames (level within
`ACTIVE_RANGE_DB` of the loudest), the mean and standard deviation of log-F0
over voiced frames (absent with no voiced frame), and the mean active frame
level (dB). As a vector (`Stats.vector`, `STAT_DIM` = 82 values): mcep mean
(40), ln mcep std (40), log-F0 mean, ln log-F0 std. The level is kept out of
the vector: it is the recording's, not the voice's; so is the correlation
matrix, which the distribution holds as each gender's mean.

* Gender and identity (`impose`, `PseudoSpeakers`): the coded envelope is
  whitened with the utterance's mean and covariance and coloured with a
  pseudo-speaker's (or, `full=False`, each dimension standardised and
  recoloured), and log-F0 standardised and recoloured likewise. The pseudo-speaker is drawn, per utterance seed,
  from a distribution fitted on training speakers' statistics vectors
  (`fit_pseudo_speakers`): the target gender 50/50, then a Gaussian of that
  gender's speakers (mean and Ledoit-Wolf shrunk covariance, Ledoit & Wolf
  2004, scikit-learn), its standard normal draw clipped to ±`clip_sigma`
  (default `CLIP_SIGMA`).
  Its envelope correlation is its gender's mean speaker correlation.
  The draw is a point of a continuous distribution, never a copy of a real
  speaker, and it depends on the seed only, not on the source. Frame level,
  voicing and aperiodicity are kept.
* Emotion (`flatten_to_speaker`): the utterance's statistics are replaced by
  its speaker's own, pooled over the speaker's utterances (`pool_stats`; a
  two-pass job: statistics first, then transform), and the contours are
  flattened: the log-F0 deviation around a fitted declination line (a
  straight line over the voiced frames' times) is multiplied by `f0_keep`,
  and the slow level contour (moving average over `smooth_ms`) of the active
  frames is multiplied by `level_keep` around the speaker's mean level.

The VoicePrivacy challenges use the same pseudo-speaker idea with x-vectors
(Srivastava et al., 2020); here it acts on the signal's own statistics.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from anoncli.synthesis.world_features import FRAME_PERIOD_MS, N_MCEP, CodedWorld

ACTIVE_RANGE_DB = 40.0
STAT_DIM = 2 * N_MCEP + 2
# a pseudo-speaker's standard normal draw is clipped here: no voice from the distribution's far tails
CLIP_SIGMA = 2.0
# a standard deviation is never below this (a constant dimension, one voiced frame)
MIN_STD = 1e-3
GENDERS = ("female", "male")
# correlation matrices are shrunk this much towards the identity before they are inverted
CORR_SHRINK = 0.02


@dataclass
class Stats:
    """One utterance's or speaker's statistics (see the module text); `f0_mean`/`f0_std` are None without F0."""

    mcep_mean: np.ndarray  # (N_MCEP,)
    mcep_std: np.ndarray  # (N_MCEP,)
    f0_mean: float | None  # mean ln(F0 / Hz) over voiced frames
    f0_std: float | None  # its standard deviation
    level_db: float  # mean active frame level, dB
    mcep_corr: np.ndarray | None = None  # (N_MCEP, N_MCEP) correlation of the coded envelope, or None

    @property
    def vector(self) -> np.ndarray:
        """(STAT_DIM,) float64: mcep mean, ln mcep std, log-F0 mean, ln log-F0 std. ValueError without F0."""
        if self.f0_mean is None or self.f0_std is None:
            raise ValueError("statistics without F0 have no full vector")
        return np.concatenate([self.mcep_mean, np.log(self.mcep_std), [self.f0_mean, np.log(self.f0_std)]])

    @classmethod
    def from_vector(cls, vector: np.ndarray, level_db: float = 0.0) -> Stats:
        """The inverse of `vector` (the level is not in it)."""
        v = np.asarray(vector, dtype=np.float64)
        return cls(v[:N_MCEP].copy(), np.exp(v[N_MCEP : 2 * N_MCEP]), float(v[-2]), float(np.exp(v[-1])), level_db)


def active_frames(features: CodedWorld, range_db: float = ACTIVE_RANGE_DB) -> np.ndarray:
    """(T,) bool: frames whose level is within `range_db` of the utterance's loudest."""
    return features.level_db >= features.level_db.max() - range_db


def correlation(frames: np.ndarray) -> np.ndarray | None:
    """(N, D) frames -> their (D, D) correlation matrix shrunk by CORR_SHRINK towards the identity
    (so that it can be inverted), or None with fewer than 2 frames."""
    if frames.shape[0] < 2:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.corrcoef(frames, rowvar=False)
    corr = np.nan_to_num(corr, nan=0.0)  # a constant dimension correlates with nothing
    np.fill_diagonal(corr, 1.0)
    return (1.0 - CORR_SHRINK) * corr + CORR_SHRINK * np.eye(frames.shape[1])


def matrix_power(matrix: np.ndarray, power: float) -> np.ndarray:
    """A symmetric positive definite matrix to a real power (eigendecomposition)."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.maximum(values, 1e-12) ** power) @ vectors.T


def _moments(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean and std (at least MIN_STD) over the first axis, or None for no values."""
    if values.shape[0] == 0:
        return None
    return values.mean(axis=0), np.maximum(values.std(axis=0), MIN_STD)


def pool_stats(utterances: Iterable[CodedWorld]) -> Stats:
    """Statistics pooled over the frames of one or more utterances (a speaker's: all of theirs).

    Raises ValueError when no utterance is given.
    """
    utterances = list(utterances)
    if not utterances:
        raise ValueError("no utterance to take statistics from")
    masks = [active_frames(u) for u in utterances]
    frames = np.concatenate([u.mcep[m] for u, m in zip(utterances, masks)], axis=0)
    mcep_mean, mcep_std = _moments(frames)
    f0 = _moments(np.concatenate([u.log_f0[u.voiced] for u in utterances]))
    level = float(np.mean(np.concatenate([u.level_db[m] for u, m in zip(utterances, masks)])))
    return Stats(
        mcep_mean,
        mcep_std,
        None if f0 is None else float(f0[0]),
        None if f0 is None else float(f0[1]),
        level,
        correlation(frames),
    )


def utterance_stats(features: CodedWorld) -> Stats:
    """One utterance's statistics (`pool_stats` of it alone)."""
    return pool_stats([features])


def impose(features: CodedWorld, source: Stats, target: Stats, level: bool = False, full: bool = True) -> CodedWorld:
    """Features with `source`'s statistics replaced by `target`'s.

    The coded envelope always: standardised per dimension, then with `full` (and both correlations known)
    whitened with the source's correlation and coloured with the target's (R_t^1/2 R_s^-1/2, symmetric
    square roots), then given the target's std and mean: the frames' mean and covariance become the
    target's (the per-dimension recolouring alone with `full=False`). log-F0 where both carry F0 (an
    unvoiced utterance keeps no F0); the frame level only with `level=True` (shifted by target minus
    source mean level).
    """
    z = (features.mcep - source.mcep_mean) / source.mcep_std
    if full and source.mcep_corr is not None and target.mcep_corr is not None:
        z = z @ (matrix_power(source.mcep_corr, -0.5) @ matrix_power(target.mcep_corr, 0.5))
    mcep = z * target.mcep_std + target.mcep_mean
    log_f0 = features.log_f0
    if features.voiced.any() and None not in (source.f0_mean, source.f0_std, target.f0_mean, target.f0_std):
        moved = (features.log_f0 - source.f0_mean) / source.f0_std * target.f0_std + target.f0_mean
        log_f0 = np.where(features.voiced, moved, 0.0)
    level_db = features.level_db + (target.level_db - source.level_db) if level else features.level_db
    return features.with_(mcep=mcep, log_f0=log_f0, level_db=level_db)


def _moving_average(values: np.ndarray, width: int) -> np.ndarray:
    from scipy.ndimage import uniform_filter1d

    return uniform_filter1d(values, size=max(1, width), mode="nearest")


def flatten_to_speaker(
    features: CodedWorld,
    speaker: Stats,
    f0_keep: float = 0.5,
    level_keep: float = 0.5,
    smooth_ms: float = 200.0,
    full: bool = True,
) -> CodedWorld:
    """Emotion normalisation: the utterance's statistics replaced by its `speaker`'s pooled ones, contours flattened.

    log-F0: standardised with the utterance's statistics, its deviation around the declination line (least
    squares over the voiced frames' times) times `f0_keep` (0 = the line, 1 = unchanged), then given the
    speaker's mean and std. Level: the active frames' slow contour (moving average over `smooth_ms`) is
    moved to the speaker's mean level and its deviation multiplied by `level_keep`; the fast (syllabic)
    part and the silences keep their distance to it. Raises ValueError for a keep factor outside [0, 1].
    """
    for name, value in (("f0_keep", f0_keep), ("level_keep", level_keep)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], not {value}")
    own = utterance_stats(features)
    out = impose(features, own, speaker, full=full)
    voiced = features.voiced
    if voiced.sum() >= 2 and speaker.f0_mean is not None and own.f0_std is not None:
        z = (features.log_f0 - own.f0_mean) / own.f0_std
        times = np.arange(len(z), dtype=np.float64)
        slope, intercept = np.polyfit(times[voiced], z[voiced], 1)
        line = slope * times + intercept
        flat = line + f0_keep * (z - line)
        flat = flat - flat[voiced].mean()  # the mean is the speaker's
        out = out.with_(log_f0=np.where(voiced, speaker.f0_mean + speaker.f0_std * flat, 0.0))
    active = active_frames(features)
    slow = _moving_average(features.level_db, int(round(smooth_ms / FRAME_PERIOD_MS)))
    slow_new = speaker.level_db + level_keep * (slow - own.level_db)
    level_db = np.where(
        active, features.level_db - slow + slow_new, features.level_db + speaker.level_db - own.level_db
    )
    return out.with_(level_db=level_db)


@dataclass
class PseudoSpeakers:
    """Per gender (`genders`, index g): the mean (STAT_DIM,) and the lower Cholesky factor (STAT_DIM, STAT_DIM)
    of a Gaussian over speakers' statistics vectors, and the mean of the speakers' coded-envelope
    correlation matrices (N_MCEP, N_MCEP; None: the draws carry none); `speakers[g]` is how many speakers fitted it.
    A draw's standard normal vector is clipped to ±`clip_sigma`."""

    genders: tuple[str, ...]
    means: np.ndarray  # (G, STAT_DIM)
    chols: np.ndarray  # (G, STAT_DIM, STAT_DIM)
    speakers: np.ndarray  # (G,) int
    corrs: np.ndarray | None = None  # (G, N_MCEP, N_MCEP)
    clip_sigma: float = CLIP_SIGMA

    def draw(self, seed: int) -> tuple[str, Stats]:
        """The pseudo-speaker of `seed`: a gender uniformly, then its statistics (level 0: not drawn).
        Depends on `seed` and the fitted parameters only."""
        rng = np.random.default_rng(int(seed) & ((1 << 63) - 1))
        g = int(rng.integers(len(self.genders)))
        z = np.clip(rng.standard_normal(self.means.shape[1]), -self.clip_sigma, self.clip_sigma)
        stats = Stats.from_vector(self.means[g] + self.chols[g] @ z)
        stats.mcep_corr = None if self.corrs is None else self.corrs[g]
        return self.genders[g], stats

    def arrays(self) -> dict[str, np.ndarray]:
        """The parameters as named arrays (saved as safetensors by the model that holds them)."""
        arrays = {"means": self.means, "chols": self.chols, "speakers": self.speakers}
        return arrays if self.corrs is None else {**arrays, "corrs": self.corrs}

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, np.ndarray], genders: Iterable[str], clip_sigma: float = CLIP_SIGMA
    ) -> PseudoSpeakers:
        """The inverse of `arrays` (`clip_sigma` is not among them: the model's config holds it); ValueError
        when the shapes do not fit together or the genders' count, or `clip_sigma` is not positive."""
        if not clip_sigma > 0:
            raise ValueError(f"clip_sigma {clip_sigma}: expected a positive number of standard deviations")
        genders = tuple(genders)
        means = np.asarray(arrays["means"], dtype=np.float64)
        chols = np.asarray(arrays["chols"], dtype=np.float64)
        speakers = np.asarray(arrays["speakers"]).astype(np.int64)
        corrs = np.asarray(arrays["corrs"], dtype=np.float64) if "corrs" in arrays else None
        if (
            means.shape != (len(genders), STAT_DIM)
            or chols.shape != (len(genders), STAT_DIM, STAT_DIM)
            or speakers.shape != (len(genders),)
            or (corrs is not None and corrs.shape != (len(genders), N_MCEP, N_MCEP))
        ):
            raise ValueError(
                f"pseudo-speaker arrays of shapes {means.shape}, {chols.shape}, {speakers.shape}"
                f"{'' if corrs is None else ', ' + str(corrs.shape)} do not describe "
                f"{len(genders)} genders of {STAT_DIM} statistics"
            )
        return cls(genders, means, chols, speakers, corrs, float(clip_sigma))


def fit_pseudo_speakers(
    speaker_stats: dict[str, Stats],
    genders: dict[str, str],
    classes: tuple[str, ...] = GENDERS,
    clip_sigma: float = CLIP_SIGMA,
) -> PseudoSpeakers:
    """Fit the pseudo-speaker distribution on speaker-level statistics (`pool_stats` of each speaker's utterances).

    speaker_stats: speaker -> Stats (speakers without F0 are skipped); genders: speaker -> one of `classes`
    (others skipped); clip_sigma: where the draws' standard normal vectors are clipped. Deterministic:
    speakers are taken in sorted order, and Ledoit-Wolf has no randomness. Raises ValueError when a class
    has fewer than 2 usable speakers.
    """
    from sklearn.covariance import LedoitWolf

    means, chols, counts, corrs = [], [], [], []
    for gender in classes:
        usable = [
            speaker_stats[s]
            for s in sorted(speaker_stats)
            if genders.get(s) == gender and speaker_stats[s].f0_mean is not None
        ]
        rows = [stats.vector for stats in usable]
        if len(rows) < 2:
            raise ValueError(f"{len(rows)} {gender} speaker(s) with F0: at least 2 are needed to fit a distribution")
        data = np.stack(rows)
        model = LedoitWolf().fit(data)
        covariance = model.covariance_ + 1e-9 * np.eye(STAT_DIM)
        means.append(data.mean(axis=0))
        chols.append(np.linalg.cholesky(covariance))
        counts.append(len(rows))
        matrices = [stats.mcep_corr for stats in usable if stats.mcep_corr is not None]
        corrs.append(np.mean(matrices, axis=0) if matrices else np.eye(N_MCEP))
    return PseudoSpeakers(
        tuple(classes),
        np.stack(means),
        np.stack(chols),
        np.asarray(counts, dtype=np.int64),
        np.stack(corrs),
        float(clip_sigma),
    )
