"""The shipped attribute attackers of `anoncli anonymize`'s per-utterance scores: small linear models.

An attacker reads one utterance's `attacker_features` (its 256-d resemblyzer
speaker embedding, the same one `link_cosine` uses, and 17 F0, loudness and
voicing statistics, `anoncli.scoring.features.prosody_features`) and gives a
probability for each class of its label: a standardisation followed by a
multinomial logistic regression, `softmax(((x - mean) / scale) @ weight.T + bias)`.
`{attribute}_p_orig` / `{attribute}_p_anon` are the probability it gives the
utterance's true class on the original and on the anonymized audio.

The attackers are trained by `anoncli train --method score-attackers` on the
development corpora (one gender model; one emotion model per corpus label
set, since RAVDESS and EmoDB name different emotions) and shipped under
`anoncli/pretrained/attackers/` with their card (data, licences, accuracy on
held-out speakers). Which emotion model scores a corpus is chosen by its label
values (`choose`); a label value the chosen model does not know is not scored.

Nothing here reads files: the caller loads the weights (safetensors) and
passes arrays to `Attacker`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

FEATURE_NAMES = "resemblyzer-256+prosody-17"
N_FEATURES = 256 + 17
# Spellings of the gender labels in the wild, mapped to the attackers' class names.
GENDER_SYNONYMS = {"m": "male", "man": "male", "f": "female", "woman": "female"}


def attacker_features(embedding: np.ndarray, prosody: np.ndarray) -> np.ndarray:
    """(N_FEATURES,) float32 attacker input: an L2-normalised (256,) embedding ⊕ (17,) prosody statistics."""
    return np.concatenate(
        [np.asarray(embedding, np.float32).reshape(-1), np.asarray(prosody, np.float32).reshape(-1)]
    ).astype(np.float32)


def normalise_label(attribute: str, value: object) -> str | None:
    """A corpus label value as the attackers spell their classes (lower case, trimmed); None when empty."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if not text or text in ("nan", "none", "null"):
        return None
    if attribute == "gender":
        return GENDER_SYNONYMS.get(text, text)
    return text


@dataclass
class Attacker:
    """One trained attacker: standardisation and a multinomial logistic regression over `classes`."""

    name: str  # e.g. "gender", "emotion-emodb"
    attribute: str  # the label column it predicts
    classes: list[str]
    mean: np.ndarray  # (D,)
    scale: np.ndarray  # (D,)
    weight: np.ndarray  # (C, D)
    bias: np.ndarray  # (C,)
    info: dict = field(default_factory=dict)  # its card entry (training data, held-out accuracy)

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, np.float64).reshape(-1)
        self.scale = np.asarray(self.scale, np.float64).reshape(-1)
        self.weight = np.asarray(self.weight, np.float64)
        self.bias = np.asarray(self.bias, np.float64).reshape(-1)
        c, d = self.weight.shape
        if c != len(self.classes) or self.bias.shape != (c,) or self.mean.shape != (d,) or self.scale.shape != (d,):
            raise ValueError(
                f"attacker {self.name}: weight {self.weight.shape}, bias {self.bias.shape}, "
                f"mean {self.mean.shape}, scale {self.scale.shape} do not fit {c} classes"
            )

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(N, C) class probabilities for (N, D) features (rows sum to 1)."""
        x = (np.atleast_2d(np.asarray(features, np.float64)) - self.mean) / self.scale
        logits = x @ self.weight.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def p_true(self, features: np.ndarray, labels: list[str | None]) -> np.ndarray:
        """(N,) probability of each row's true class; NaN where the label is None or not one of `classes`."""
        p = self.probabilities(features)
        index = {name: i for i, name in enumerate(self.classes)}
        out = np.full(len(labels), np.nan)
        for row, label in enumerate(labels):
            if label in index:
                out[row] = p[row, index[label]]
        return out

    def tensors(self) -> dict[str, np.ndarray]:
        """The arrays to save (float32), by name: mean, scale, weight, bias."""
        return {name: np.asarray(getattr(self, name), np.float32) for name in ("mean", "scale", "weight", "bias")}


@dataclass
class Choice:
    """Which attacker scores an attribute on a corpus, and what it cannot score."""

    attribute: str
    attacker: str | None  # None: no shipped attacker knows any of the labels
    unknown: dict[str, int] = field(default_factory=dict)  # label value -> utterances the attacker cannot score
    note: str | None = None  # for run.json


def choose(attribute: str, values: Iterable[object], attackers: list[Attacker], language: str | None = None) -> Choice:
    """The attacker of `attribute` that knows the most of the corpus's labelled utterances.

    values: the label of every utterance (None or '' where unlabelled);
    language: the corpus's language label, if any: on a tie, an attacker
    trained on that language (its card's "language") wins, then the first by name.
    """
    labels = [normalise_label(attribute, v) for v in values]
    counts: dict[str, int] = {}
    for label in labels:
        if label is not None:
            counts[label] = counts.get(label, 0) + 1
    candidates = [a for a in attackers if a.attribute == attribute]
    if not counts:
        return Choice(attribute, None, note=f"{attribute}: no utterance is labelled; not scored")
    if not candidates:
        return Choice(attribute, None, dict(counts), f"{attribute}: no shipped attacker; not scored")
    best = max(
        sorted(candidates, key=lambda a: a.name),
        key=lambda a: (
            sum(n for label, n in counts.items() if label in a.classes),
            language is not None and a.info.get("language") == language,
        ),
    )
    unknown = {label: n for label, n in sorted(counts.items()) if label not in best.classes}
    if len(unknown) == len(counts):
        known = sorted({c for a in candidates for c in a.classes})
        return Choice(
            attribute,
            None,
            unknown,
            f"{attribute}: the shipped attackers know none of this corpus's labels "
            f"({', '.join(sorted(unknown))}; they know {', '.join(known)}); not scored",
        )
    note = None
    if unknown:
        listed = ", ".join(f"{label!r} ({n})" for label, n in unknown.items())
        note = (
            f"{attribute}: labels the shipped attacker {best.name} does not know are not scored: {listed}; "
            f"it knows {', '.join(best.classes)}"
        )
    return Choice(attribute, best.name, unknown, note)
