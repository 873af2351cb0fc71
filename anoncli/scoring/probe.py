"""Cross-validation folds and the cross-validated classifier probe.

`make_folds` is the one fold maker: `evaluate`'s attribute attackers and the
representation probes use it, and so do the trainers' held-out reports.
`cross_validated_probe` trains a small classifier (an MLP or logistic
regression) on all folds but one and predicts the held-out fold, so every
item gets exactly one out-of-fold prediction. `enrolment_split` makes the
one split of a closed-set speaker attacker that enrols on a fixed amount of
speech per speaker and is tested on the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from anoncli.scoring.metrics import binary_auc


def make_folds(labels: Sequence, groups: Sequence | None = None, n_folds: int = 5, seed: int = 0) -> list[np.ndarray]:
    """Cross-validation folds as arrays of item indices (every item in exactly one fold).

    Args:
        labels: (N,) class of each item (strings or integers, compared as given).
        groups: (N,) group of each item (e.g. its speaker), or None.
        n_folds: the most folds to make.
        seed: seed of the shuffles.

    With `groups`, folds are group-disjoint (leave-groups-out): the groups are
    ordered by their majority label (ties broken by a seeded draw) and dealt
    round-robin into min(n_folds, number of groups) folds, so every training
    side sees each label that two or more groups carry. Without, folds are
    stratified: each label's items are shuffled and dealt round-robin into
    min(n_folds, max(2, smallest label count)) folds. Empty folds are left out.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return []
    rng = np.random.default_rng(seed)
    fold = np.full(len(labels), -1)
    if groups is not None:
        groups = np.asarray([str(g) for g in groups])
        unique = np.unique(groups)
        k = int(min(n_folds, len(unique)))
        majority = {}
        for g in unique:
            values, counts = np.unique(labels[groups == g], return_counts=True)
            majority[g] = values[np.argmax(counts)]
        order = sorted(unique, key=lambda g: (majority[g], rng.random()))
        for position, g in enumerate(order):
            fold[groups == g] = position % k
    else:
        values, counts = np.unique(labels, return_counts=True)
        k = int(min(n_folds, max(2, counts.min())))
        for value in values:
            rows = rng.permutation(np.flatnonzero(labels == value))
            fold[rows] = np.arange(len(rows)) % k
    folds = [np.flatnonzero(fold == j) for j in range(k)]
    return [f for f in folds if f.size]


def enrolment_split(
    speakers: Sequence, durations: Sequence[float], enrol_s: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(enrolment, test) item indices: each speaker enrols on about `enrol_s` seconds, is tested on the rest.

    Args:
        speakers: (N,) speaker of each item.
        durations: (N,) duration of each item in seconds.
        enrol_s: seconds of speech per speaker to enrol on.
        seed: seed of the per-speaker shuffle.

    A speaker's items are shuffled (seeded) and taken into the enrolment set
    until their total reaches `enrol_s` seconds, keeping at least one item for
    the test set; a speaker with a single item is enrolment only (a class the
    attacker knows, never tested). Raises ValueError for a duration that is
    missing, not finite or negative, or when `enrol_s` is not positive.
    """
    speakers = np.asarray([str(s) for s in speakers])
    durations = np.asarray(durations, dtype=np.float64)
    if durations.shape != speakers.shape:
        raise ValueError(f"{len(durations)} durations for {len(speakers)} items")
    if not (enrol_s > 0):
        raise ValueError(f"enrolment of {enrol_s} s: expected a positive number of seconds")
    if not np.isfinite(durations).all() or (durations < 0).any():
        raise ValueError("an item has no usable duration (missing, not finite or negative)")
    rng = np.random.default_rng(seed)
    enrol: list[int] = []
    for speaker in np.unique(speakers):
        items = rng.permutation(np.flatnonzero(speakers == speaker))
        total, taken = 0.0, 0
        while taken < len(items) and total < enrol_s and (taken < len(items) - 1 or taken == 0):
            total += durations[items[taken]]
            taken += 1
        enrol += items[:taken].tolist()
    enrol_idx = np.sort(np.asarray(enrol, dtype=int))
    return enrol_idx, np.setdiff1d(np.arange(len(speakers)), enrol_idx)


def _train_mlp(
    x: np.ndarray, y: np.ndarray, n_classes: int, seed: int, hidden: int = 256, steps: int = 400, dropout: float = 0.3
):
    """A one-hidden-layer MLP trained for a fixed number of Adam steps on minibatches of 128."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y).long()
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (min(128, len(xt)),), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
        opt.step()
    model.eval()
    return model


def _train_linear(x: np.ndarray, y: np.ndarray, n_classes: int, seed: int):
    """Multinomial logistic regression (L2, full-batch L-BFGS): strong on few, wide examples."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    model = nn.Linear(x.shape[1], n_classes)
    xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y).long()
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=200, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        """One L-BFGS evaluation: cross-entropy plus the L2 penalty, with gradients; returns the loss."""
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xt), yt) + 0.5 / len(xt) * model.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    model.eval()
    return model


def _macro_auc(y: np.ndarray, proba: np.ndarray) -> float | None:
    """Mean over classes of the ROC AUC of "this class vs the rest" on its probability column."""
    values = [binary_auc(y == c, proba[:, c]) for c in range(proba.shape[1])]
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def cross_validated_probe(
    features: np.ndarray,
    labels: Sequence,
    groups: Sequence | None = None,
    n_folds: int = 5,
    seed: int = 0,
    hidden: int = 256,
    steps: int = 400,
    models: Sequence[str] = ("mlp", "linear"),
    folds: Sequence[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Out-of-fold predictions of a classifier (the service's head or the attacker).

    Each model in `models` ("mlp": one hidden layer; "linear": logistic
    regression) is cross-validated and the more accurate one is reported —
    for an attacker that is the conservative (privacy-pessimistic) choice;
    small sets of wide feature vectors favour the linear model. Features are
    standardised with the training fold's statistics. Returns classes, label,
    predicted (class names), score (P(positive) for 2 classes, else
    P(predicted)), accuracy, chance (majority share), auc (2 classes only),
    auc_ovr (macro one-vs-rest AUC, any number of classes), n and model.

    `folds` (test index arrays, e.g. `[enrolment_split(...)[1]]`) replaces the
    folds `make_folds` would make: each is predicted by a model trained on every
    item outside it, and only items in some fold are scored. `index` gives the
    scored items (all of them without `folds`), in the order of label,
    predicted and score.
    """
    results = [
        _cross_validate(features, labels, groups, n_folds, seed, model, hidden, steps, folds) for model in models
    ]
    return max(results, key=lambda r: r["accuracy"])


def _cross_validate(features, labels, groups, n_folds, seed, model_kind, hidden, steps, folds=None) -> dict[str, Any]:
    import torch

    x = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
    names = np.asarray([str(v) for v in labels])
    classes = sorted(set(names))
    y = np.asarray([classes.index(v) for v in names])
    predicted = np.zeros(len(y), dtype=int)
    proba = np.zeros((len(y), len(classes)), dtype=np.float64)
    if len(classes) < 2:
        raise ValueError("a probe needs at least two classes")
    if folds is None:
        folds = make_folds(names, groups, n_folds, seed)
    folds = [np.asarray(f, dtype=int) for f in folds]
    scored = np.unique(np.concatenate(folds)) if folds else np.arange(0)
    if scored.size == 0:
        raise ValueError("no item to predict (every fold is empty)")
    for k, test in enumerate(folds):
        train = np.setdiff1d(np.arange(len(y)), test)
        if len(test) == 0:
            continue
        if len(set(y[train])) < 2:
            raise ValueError("a training fold holds only one class (too few items or groups)")
        mean, std = x[train].mean(0), x[train].std(0) + 1e-6
        if model_kind == "linear":
            model = _train_linear((x[train] - mean) / std, y[train], len(classes), seed + k)
        else:
            model = _train_mlp((x[train] - mean) / std, y[train], len(classes), seed + k, hidden, steps)
        with torch.no_grad():
            p = torch.softmax(model(torch.from_numpy((x[test] - mean) / std).float()), dim=1).numpy()
        # a class absent from this training fold (speaker-disjoint folds) must not be predicted
        missing = np.setdiff1d(np.arange(len(classes)), np.unique(y[train]))
        if len(missing):
            p[:, missing] = 0.0
            p /= p.sum(1, keepdims=True)
        proba[test] = p
        predicted[test] = p.argmax(1)
    y, predicted, proba, names = y[scored], predicted[scored], proba[scored], names[scored]
    counts = np.bincount(y, minlength=len(classes))
    score = proba[:, 1] if len(classes) == 2 else proba[np.arange(len(y)), predicted]
    return {
        "classes": classes,
        "predicted": [classes[i] for i in predicted],
        "label": names.tolist(),
        "score": score,
        "index": scored,
        "accuracy": float(np.mean(predicted == y)),
        "chance": float(counts.max() / counts.sum()),
        "auc": binary_auc(y == 1, proba[:, 1]) if len(classes) == 2 else None,
        # macro one-vs-rest ROC AUC over the classes (equals "auc" for 2 classes)
        "auc_ovr": _macro_auc(y, proba),
        "n": int(len(y)),
        "model": model_kind,
    }
