"""Frame replacement on compact WORLD features: phone posteriors, a pseudo-speaker phone inventory, the mix.

The idea of kNN-VC (Baas, van Niekerk & Kamper, Interspeech 2023: every
frame replaced by frames of the target speaker that match it in a
speaker-independent space) with two changes that keep the model small and
the matching free of the source's spectra:

* the matching space is the posterior of a small phone classifier
  (`PhoneClassifier`), fed per-utterance normalised WORLD features with
  context (`classifier_input`), not the raw spectra;
* the target frames are per-phone centroids of pool speakers
  (`PhoneInventory`: per training speaker and phone class, the mean coded
  envelope and band aperiodicity of the frames labelled with that phone),
  not every frame of the target's speech.

Phone labels come from pocketsphinx's phone-loop ("allphone") decoding with
its bundled US-English acoustic model and phonetic language model
(`PhoneLabeller`, CMU phone set, `PHONES`: 39 phones and `SIL` for silence
and fillers), so no transcript is needed.

`replace_frames` (per utterance): the source frame's phone posteriors
(T, P), sharpened (p^γ, renormalised), weight the pool speakers' mean phone
centroids (P, D): each frame becomes the posterior-weighted mix of the
pool's realisations of the phones it is likely to be, plus `detail` times
the frame's deviation from the source's own realisation of those phones
(0: nothing of the source's spectra is kept; 1: only each phone's mean is
moved to the pool's). F0, voicing and level stay the source's; the pseudo-speaker statistics of
`anoncli.synthesis.world_norm` are imposed afterwards by the method.

Shapes: `features.mcep` (T, 40), `features.bap` (T, A); centroids
(S, P, 40 + A) for S speakers and P = len(PHONES) classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from anoncli.synthesis.world_features import FRAME_PERIOD_MS, N_MCEP, CodedWorld

# pocketsphinx en-us phone set (CMU, no stress); every filler (+NSN+, +SPN+, ...) is SIL
PHONES = (
    "SIL AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W Y Z ZH"
).split()
PHONE_INDEX = {p: i for i, p in enumerate(PHONES)}
# classifier context: offsets in 5 ms frames (±60 ms)
CONTEXT = (-12, -6, -3, 0, 3, 6, 12)
# per frame: normalised mcep (40), normalised log-F0 (0 unvoiced), voicing, level below the loudest frame
FRAME_DIM = N_MCEP + 3
INPUT_DIM = FRAME_DIM * len(CONTEXT)
# level relative to the loudest frame is divided by this (dB) before the classifier
LEVEL_SCALE_DB = 20.0
# pocketsphinx's frame period (ms)
LABEL_PERIOD_MS = 10.0
# a speaker's phone centroid is shrunk towards its gender's centroid of that phone (plus the speaker's
# own offset) as if the prior had this many frames: rare phones of one speaker are not one noisy frame
PRIOR_FRAMES = 20.0


def phone_class(name: str) -> int:
    """Class index of a pocketsphinx phone or filler name (fillers and unknown names: SIL, 0)."""
    return PHONE_INDEX.get(name.upper(), 0)


class PhoneLabeller:
    """Phone-loop decoding with pocketsphinx's bundled en-us acoustic model and phonetic language model.

    `labels(wave16k)` -> (ceil(N / 160),) int64 class per 10 ms frame. The cepstral mean is reset per
    utterance, so a label never depends on the utterances decoded before it.
    """

    sample_rate = 16000

    def __init__(self):
        import os

        import pocketsphinx

        model = os.path.join(pocketsphinx.get_model_path(), "en-us", "en-us-phone.lm.bin")
        self.decoder = pocketsphinx.Decoder(loglevel="FATAL", allphone=model, lm=None)

    def labels(self, wave16k: np.ndarray) -> np.ndarray:
        """(N,) float wave in [-1, 1] at 16 kHz -> (F,) int64 phone class per 10 ms frame (SIL where no segment)."""
        wave16k = np.asarray(wave16k, dtype=np.float64).reshape(-1)
        frames = max(1, int(np.ceil(wave16k.size / (self.sample_rate * LABEL_PERIOD_MS / 1000.0))))
        out = np.zeros(frames, dtype=np.int64)
        pcm = (np.clip(wave16k, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
        self.decoder.reinit_feat()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        for seg in self.decoder.seg():
            start, end = max(0, int(seg.start_frame)), min(frames - 1, int(seg.end_frame))
            if end >= start:
                out[start : end + 1] = phone_class(seg.word)
        return out


def labels_at_frames(labels: np.ndarray, n_frames: int) -> np.ndarray:
    """10 ms frame labels (F,) -> (n_frames,) labels of the 5 ms WORLD frames (the 10 ms frame holding each)."""
    ratio = LABEL_PERIOD_MS / FRAME_PERIOD_MS
    index = np.minimum((np.arange(n_frames) / ratio).astype(np.int64), len(labels) - 1)
    return np.asarray(labels)[index]


def frame_inputs(features: CodedWorld) -> np.ndarray:
    """(T, FRAME_DIM) float32 per-frame classifier features of one utterance, free of its own statistics:
    the coded envelope standardised with the utterance's mean and std over its active frames
    (`world_norm.active_frames`), log-F0 standardised over its voiced frames (0 where unvoiced), voicing
    (0/1), and the level below the loudest frame divided by LEVEL_SCALE_DB."""
    from anoncli.synthesis.world_norm import MIN_STD, active_frames

    active = active_frames(features)
    ref = features.mcep[active]
    z = (features.mcep - ref.mean(axis=0)) / np.maximum(ref.std(axis=0), MIN_STD)
    f0 = np.zeros(len(features.voiced))
    if features.voiced.any():
        voiced = features.log_f0[features.voiced]
        f0 = np.where(features.voiced, (features.log_f0 - voiced.mean()) / max(voiced.std(), MIN_STD), 0.0)
    level = (features.level_db - features.level_db.max()) / LEVEL_SCALE_DB
    return np.column_stack([z, f0, features.voiced.astype(np.float64), level]).astype(np.float32)


def with_context(frames: torch.Tensor, index: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """Stack context: frames (N, FRAME_DIM) of concatenated utterances, index (B,) frames to build, starts/ends
    (B,) the first and last frame of each one's utterance -> (B, INPUT_DIM), offsets CONTEXT clamped
    inside the utterance."""
    offsets = torch.tensor(CONTEXT, dtype=torch.long)
    at = (index[:, None] + offsets[None, :]).clamp(min=starts[:, None], max=ends[:, None])
    return frames[at].reshape(len(index), -1)


def classifier_input(features: CodedWorld) -> torch.Tensor:
    """(T, INPUT_DIM) float32: `frame_inputs` with context (CONTEXT offsets, clamped at the edges)."""
    frames = torch.from_numpy(frame_inputs(features))
    t = frames.shape[0]
    index = torch.arange(t)
    return with_context(frames, index, torch.zeros(t, dtype=torch.long), torch.full((t,), t - 1))


class PhoneClassifier(nn.Module):
    """MLP from `classifier_input` (B, INPUT_DIM) to phone logits (B, classes): two hidden ReLU layers of
    `hidden` units with dropout. `stride` 1 (frame by frame)."""

    stride = 1

    def __init__(self, hidden: int = 256, classes: int = len(PHONES), dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(INPUT_DIM, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def posteriors(self, features: CodedWorld) -> np.ndarray:
        """(T, classes) float64 phone posteriors of one utterance's frames."""
        device = next(self.parameters()).device
        logits = self(classifier_input(features).to(device))
        return torch.softmax(logits.double(), dim=-1).cpu().numpy()


@dataclass
class PhoneInventory:
    """Per speaker s and phone class p, the centroid `centroids[s, p]` (40 coded envelope coefficients, then
    A band aperiodicity values) of their frames labelled p (shrunk towards the gender's, see
    `fit_inventory`), how many frames it holds `counts[s, p]`, and the speaker's gender `genders[s]`
    (an index into the model's classes)."""

    centroids: np.ndarray  # (S, P, 40 + A) float
    counts: np.ndarray  # (S, P) int
    genders: np.ndarray  # (S,) int

    def __post_init__(self):
        s, p, d = np.shape(self.centroids)
        if np.shape(self.counts) != (s, p) or np.shape(self.genders) != (s,) or d <= N_MCEP or p != len(PHONES):
            raise ValueError(
                f"inventory arrays of shapes {np.shape(self.centroids)}, {np.shape(self.counts)}, "
                f"{np.shape(self.genders)} do not describe speakers x {len(PHONES)} phones x (40 + bands)"
            )

    def draw_pool(self, seed: int, gender: int, size: int) -> np.ndarray:
        """`size` distinct speakers (sorted indices) of `gender`, drawn from `seed` only (all of them when
        fewer). ValueError when the inventory has no speaker of that gender."""
        candidates = np.flatnonzero(self.genders == gender)
        if candidates.size == 0:
            raise ValueError(f"the inventory has no speaker of gender index {gender}")
        rng = np.random.default_rng((int(seed) ^ 0x9E3779B97F4A7C15) & ((1 << 63) - 1))
        return np.sort(rng.choice(candidates, size=min(size, candidates.size), replace=False))

    def pool_centroids(self, pool: np.ndarray) -> np.ndarray:
        """(P, 40 + A) float64: the pool speakers' mean centroid of each phone."""
        return np.asarray(self.centroids, dtype=np.float64)[np.asarray(pool)].mean(axis=0)


def fit_inventory(
    frames: list[np.ndarray],
    labels: list[np.ndarray],
    speakers: list[int],
    genders: np.ndarray,
    prior_frames: float = PRIOR_FRAMES,
) -> PhoneInventory:
    """Per-speaker phone centroids from labelled frames.

    frames: per utterance (T_i, 40 + A) coded envelope and band aperiodicity; labels: per utterance (T_i,)
    phone class; speakers: per utterance its speaker index in [0, S); genders: (S,) gender index of each
    speaker. A speaker's centroid of phone p is (sum of its frames of p + prior_frames * prior) /
    (n + prior_frames), where the prior is its gender's mean centroid of p (over every frame of that
    gender labelled p; the gender's mean frame when none is) moved by the speaker's own mean frame minus
    the gender's: a phone the speaker never said gets its gender's realisation in the speaker's colour.
    ValueError for mismatched lengths or a speaker with no frame.
    """
    genders = np.asarray(genders, dtype=np.int64)
    n_speakers, n_phones = len(genders), len(PHONES)
    if not (len(frames) == len(labels) == len(speakers)):
        raise ValueError("frames, labels and speakers must have one entry per utterance")
    dim = frames[0].shape[1]
    sums = np.zeros((n_speakers, n_phones, dim))
    counts = np.zeros((n_speakers, n_phones), dtype=np.int64)
    for x, y, s in zip(frames, labels, speakers):
        if len(x) != len(y):
            raise ValueError(f"an utterance has {len(x)} frames and {len(y)} labels")
        np.add.at(sums[s], y, x)
        counts[s] += np.bincount(y, minlength=n_phones)
    totals = counts.sum(axis=1)
    if (totals == 0).any():
        raise ValueError(f"speaker index {int(np.flatnonzero(totals == 0)[0])} has no frame")
    speaker_mean = sums.sum(axis=1) / totals[:, None]
    centroids = np.zeros_like(sums)
    for g in np.unique(genders):
        members = genders == g
        g_sums, g_counts = sums[members].sum(axis=0), counts[members].sum(axis=0)
        g_mean = g_sums.sum(axis=0) / max(1, g_counts.sum())
        g_phone = np.where(g_counts[:, None] > 0, g_sums / np.maximum(g_counts, 1)[:, None], g_mean)
        prior = g_phone[None] + (speaker_mean[members] - g_mean)[:, None, :]
        centroids[members] = (sums[members] + prior_frames * prior) / (counts[members] + prior_frames)[..., None]
    return PhoneInventory(centroids, counts, genders)


def sharpen(posteriors: np.ndarray, power: float) -> np.ndarray:
    """(T, P) posteriors to the power `power` (> 0), renormalised per frame (1: unchanged; large: the argmax)."""
    if not power > 0:
        raise ValueError(f"sharpening power {power}: expected a positive number")
    logp = power * np.log(np.maximum(posteriors, 1e-30))
    logp -= logp.max(axis=1, keepdims=True)
    weights = np.exp(logp)
    return weights / weights.sum(axis=1, keepdims=True)


def replace_frames(
    features: CodedWorld,
    posteriors: np.ndarray,
    pool_centroids: np.ndarray,
    power: float = 1.0,
    detail: float = 0.0,
    prior_frames: float = PRIOR_FRAMES,
) -> CodedWorld:
    """Each frame's coded envelope and band aperiodicity x_t (40 + A) replaced by

        y_t = sum_p w_tp c_p + detail * (x_t - sum_p w_tp s_p),

    w_t the frame's `posteriors` (T, P) sharpened with `power`, c_p the pool's centroids
    (`pool_centroids`, P x (40 + A)), s_p the source utterance's own centroids (its frames' w-weighted
    means, shrunk towards c_p moved by the source's mean minus the pool's, as if that prior had
    `prior_frames` frames). `detail` 0: every frame is the pool's mix (nothing of the source's spectra
    is left); 1: the source's frames with each phone's mean moved from the source's realisation to the
    pool's (within-phone detail kept). F0, voicing and level are the source's. ValueError when the shapes
    disagree or `detail` is outside [0, 1].
    """
    t, a = features.mcep.shape[0], features.bap.shape[1]
    if posteriors.shape != (t, pool_centroids.shape[0]) or pool_centroids.shape[1] != N_MCEP + a:
        raise ValueError(
            f"posteriors {posteriors.shape} and centroids {pool_centroids.shape} do not fit {t} frames "
            f"of {N_MCEP} + {a} values"
        )
    if not 0.0 <= detail <= 1.0:
        raise ValueError(f"detail {detail}: expected a value in [0, 1]")
    weights = sharpen(posteriors, power)
    mixed = weights @ pool_centroids
    if detail > 0:
        source = np.column_stack([features.mcep, features.bap])
        prior = pool_centroids + (source.mean(axis=0) - pool_centroids.mean(axis=0))
        own = (weights.T @ source + prior_frames * prior) / (weights.sum(axis=0)[:, None] + prior_frames)
        mixed = mixed + detail * (source - weights @ own)
    return features.with_(mcep=mixed[:, :N_MCEP], bap=mixed[:, N_MCEP:])
