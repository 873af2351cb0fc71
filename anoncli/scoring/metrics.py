"""Corpus-level figures: EER/minDCF, normalised privacy scores, UAR, ROC AUC, bootstrap CIs.

Names follow the papers (see docs/evaluation.md): `EER`/`GR` are raw percentages,
lower-case `eer`/`gr` are the normalised privacy scores where 100 means the
attacker is at chance.
"""

from __future__ import annotations

import numpy as np

SPEECHBRAIN_MAX_TRIALS = 4000  # speechbrain's EER/minDCF scan every threshold: 15 s at 13 500 trials


def eer_minDCF(target_scores, nontarget_scores, p_target: float = 0.01) -> tuple[float, float, float]:
    """(EER in %, normalised minDCF, EER threshold).

    Computed with speechbrain's `EER`/`minDCF` up to SPEECHBRAIN_MAX_TRIALS
    trials; above that with `fast_eer`/`fast_min_dcf` (one sort, same
    definitions), because speechbrain's threshold scan is quadratic.
    speechbrain returns the raw detection cost; dividing by the cost of the
    best trivial system, min(p_target, 1 − p_target), gives the usual
    normalised minDCF (1.0 = no better than always rejecting).
    """
    t = np.asarray(target_scores, dtype=np.float64)
    n = np.asarray(nontarget_scores, dtype=np.float64)
    if t.size == 0 or n.size == 0:
        return float("nan"), float("nan"), float("nan")
    if t.size + n.size > SPEECHBRAIN_MAX_TRIALS:
        return fast_eer(t, n), fast_min_dcf(t, n, p_target), float("nan")
    import torch
    from speechbrain.utils.metric_stats import EER, minDCF

    pos, neg = torch.from_numpy(t).float(), torch.from_numpy(n).float()
    eer, threshold = EER(pos, neg)
    dcf, _ = minDCF(pos, neg, p_target=p_target)
    return 100.0 * float(eer), float(dcf) / min(p_target, 1.0 - p_target), float(threshold)


def fast_min_dcf(target_scores, nontarget_scores, p_target: float = 0.01) -> float:
    """Normalised minimum detection cost (c_miss = c_fa = 1) over every threshold of the ROC."""
    fa, miss = roc_curve_points(np.asarray(target_scores, float), np.asarray(nontarget_scores, float))
    cost = miss * p_target + fa * (1.0 - p_target)
    return float(cost.min() / min(p_target, 1.0 - p_target))


def normalised_eer(eer_percent: float) -> float:
    """`eer = 100 − 2·|EER − 50|`: 100 when the verifier is at chance (EER 50 %)."""
    return 100.0 - 2.0 * abs(float(eer_percent) - 50.0)


def normalised_accuracy(accuracy: float, chance: float, full: float = 100.0) -> float:
    """An attacker's accuracy as a privacy score: `100·(1 − |acc − chance| / (full − chance))`, clipped to [0, 100].

    100 means the attacker is at chance; 0 that it is always right (or always
    wrong, which leaks as much). `accuracy` and `chance` are percentages
    (`full` = 100) or fractions (`full` = 1). For two balanced classes (chance
    50 %) this is GenGAN's `gr = 100 − 2·|GR − 50|`. Returns nan when either
    input is nan, or when chance ≥ full (a single class: nothing to hide, no score).
    """
    accuracy, chance, full = float(accuracy), float(chance), float(full)
    if not (np.isfinite(accuracy) and np.isfinite(chance)) or chance >= full:
        return float("nan")
    value = 100.0 * (1.0 - abs(accuracy - chance) / (full - chance))
    return float(min(100.0, max(0.0, value)))


def accuracy(y_true, y_pred) -> float:
    """Share of `y_pred` equal to `y_true`, in % (0..100); nan for empty inputs."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return 100.0 * float(np.mean(y_true == y_pred)) if y_true.size else float("nan")


def uar(y_true, y_pred) -> float:
    """Unweighted average recall (macro recall) over the classes present in y_true, in %."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    recalls = [np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]
    return 100.0 * float(np.mean(recalls)) if recalls else float("nan")


def binary_auc(labels, scores) -> float | None:
    """Binary ROC AUC as the Mann-Whitney U statistic (tied scores share their average rank).

    `labels` (N,) truthy for the positive class, `scores` (N,) higher for more
    positive. None when one class is absent.
    """
    from scipy.stats import rankdata

    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores, method="average")
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_auc(y_true, probabilities: np.ndarray, n_classes: int) -> float:
    """ROC AUC of class posteriors `probabilities` (N, n_classes) for integer labels `y_true` (N,).

    Binary: the AUC of the second class's posterior. More classes: the
    one-vs-rest AUC averaged over the classes present in y_true. nan when
    fewer than two classes are present.
    """
    y_true = np.asarray(y_true)
    present = np.unique(y_true)
    if present.size < 2:
        return float("nan")
    if n_classes == 2:
        return float(binary_auc(y_true == 1, probabilities[:, 1]))
    return float(np.mean([binary_auc(y_true == c, probabilities[:, c]) for c in present]))


def roc_curve_points(target_scores, nontarget_scores) -> tuple[np.ndarray, np.ndarray]:
    """(false-alarm rate, miss rate) at every threshold, for DET plots."""
    scores = np.concatenate([target_scores, nontarget_scores])
    is_target = np.concatenate([np.ones(len(target_scores)), np.zeros(len(nontarget_scores))])
    order = np.argsort(-scores, kind="mergesort")
    is_target = is_target[order]
    hits = np.cumsum(is_target)
    false_alarms = np.cumsum(1 - is_target)
    n_target, n_non = max(1, len(target_scores)), max(1, len(nontarget_scores))
    miss = np.concatenate([[1.0], 1.0 - hits / n_target])
    fa = np.concatenate([[0.0], false_alarms / n_non])
    return fa, miss


def bootstrap_ci(
    statistic, groups: np.ndarray, n_boot: int = 200, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile CI of `statistic(indices)` resampling whole groups (speakers) with replacement.

    Resampling speakers rather than utterances keeps the interval honest when
    utterances of one speaker are correlated.
    """
    groups = np.asarray(groups)
    unique = np.unique(groups)
    if unique.size < 2:
        return float("nan"), float("nan")
    members = {g: np.flatnonzero(groups == g) for g in unique}
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        picked = rng.choice(unique, size=unique.size, replace=True)
        indices = np.concatenate([members[g] for g in picked])
        value = statistic(indices)
        if value is not None and np.isfinite(value):
            values.append(value)
    if len(values) < max(10, n_boot // 10):
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    return float(np.quantile(values, tail)), float(np.quantile(values, 1.0 - tail))


def fast_eer(target_scores, nontarget_scores) -> float:
    """EER (%) from the ROC by sorting once; used inside bootstrap loops (speechbrain's is slower)."""
    t = np.asarray(target_scores, dtype=np.float64)
    n = np.asarray(nontarget_scores, dtype=np.float64)
    if t.size == 0 or n.size == 0:
        return float("nan")
    fa, miss = roc_curve_points(t, n)
    index = int(np.argmin(np.abs(fa - miss)))
    # Between two ROC points the crossing lies halfway on average; take the mean of the two rates.
    return 100.0 * float((fa[index] + miss[index]) / 2.0)
