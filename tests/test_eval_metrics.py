"""Corpus-level metrics: EER against an independent ROC computation, normalised scores, UAR, AUC."""

import numpy as np
import pytest

from anoncli.scoring import metrics


def brute_force_eer(target, nontarget):
    """EER (%) by trying every observed score as threshold: accept when score >= threshold."""
    best = None
    for threshold in np.concatenate([target, nontarget]):
        frr = np.mean(target < threshold)
        far = np.mean(nontarget >= threshold)
        gap = abs(far - frr)
        if best is None or gap < best[0]:
            best = (gap, 100.0 * (far + frr) / 2)
    return best[1]


@pytest.mark.parametrize("separation", [0.5, 1.5, 3.0])
def test_eer_matches_independent_roc(separation):
    rng = np.random.default_rng(int(separation * 10))
    target = rng.normal(separation, 1.0, 400)
    nontarget = rng.normal(0.0, 1.0, 2000)
    expected = brute_force_eer(target, nontarget)
    eer, min_dcf, _ = metrics.eer_minDCF(target, nontarget)
    assert eer == pytest.approx(expected, abs=0.6)
    assert metrics.fast_eer(target, nontarget) == pytest.approx(expected, abs=0.6)
    assert 0.0 <= min_dcf <= 1.0 + 1e-6


def test_eer_extremes():
    assert metrics.eer_minDCF([0.9, 0.8, 0.95], [0.1, 0.2, 0.3])[0] == pytest.approx(0.0, abs=1e-6)
    same = np.linspace(0, 1, 500)
    assert metrics.eer_minDCF(same, same)[0] == pytest.approx(50.0, abs=1.0)


def test_normalised_scores_match_gengan_table():
    # GenGAN Table 1: GR 91.37 -> gr 17.26, EER 5.73 -> eer 11.46
    assert metrics.normalised_accuracy(91.37, 50.0) == pytest.approx(17.26, abs=0.005)
    assert metrics.normalised_eer(5.73) == pytest.approx(11.46, abs=0.005)
    assert metrics.normalised_eer(41.95) == pytest.approx(83.90, abs=0.005)
    assert metrics.normalised_accuracy(48.39, 50.0) == pytest.approx(96.78, abs=0.005)


def test_generalised_normalisation_is_clipped_and_k_class():
    assert metrics.normalised_accuracy(1 / 7 * 100, 1 / 7 * 100) == pytest.approx(100.0)
    assert metrics.normalised_accuracy(100.0, 1 / 7 * 100) == pytest.approx(0.0)
    assert metrics.normalised_accuracy(0.0, 1 / 7 * 100) == pytest.approx(100 * (1 - (100 / 7) / (600 / 7)))
    assert metrics.normalised_accuracy(0.0, 50.0) == pytest.approx(0.0)  # always wrong = fully informative
    assert metrics.normalised_accuracy(0.0, 80.0) == 0.0  # clipped, not negative


def test_uar_and_auc():
    y = np.array([0, 0, 0, 0, 1])
    pred = np.array([0, 0, 0, 0, 0])
    assert metrics.accuracy(y, pred) == pytest.approx(80.0)
    assert metrics.uar(y, pred) == pytest.approx(50.0)
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.1, 0.9]])
    assert metrics.roc_auc(y, probs, 2) == pytest.approx(1.0)
    three = np.eye(3)[[0, 1, 2, 0]]
    assert metrics.roc_auc(np.array([0, 1, 2, 0]), three, 3) == pytest.approx(1.0)


def test_bootstrap_ci_contains_the_estimate():
    rng = np.random.default_rng(0)
    values = rng.normal(5.0, 1.0, 200)
    groups = np.repeat(np.arange(20), 10)
    low, high = metrics.bootstrap_ci(lambda ix: float(np.mean(values[ix])), groups, n_boot=100)
    assert low < np.mean(values) < high
    assert high - low < 1.5


def test_fast_min_dcf_matches_speechbrain():
    import torch
    from speechbrain.utils.metric_stats import minDCF

    rng = np.random.default_rng(5)
    target, nontarget = rng.normal(2.0, 1.0, 300), rng.normal(0.0, 1.0, 900)
    raw, _ = minDCF(torch.tensor(target).float(), torch.tensor(nontarget).float(), p_target=0.01)
    assert metrics.fast_min_dcf(target, nontarget, 0.01) == pytest.approx(float(raw) / 0.01, abs=0.02)
    big_t, big_n = rng.normal(2.0, 1.0, 2000), rng.normal(0.0, 1.0, 8000)  # above the speechbrain cut-off
    eer, dcf, _ = metrics.eer_minDCF(big_t, big_n)
    assert eer == pytest.approx(brute_force_eer(big_t, big_n), abs=0.3)
