"""The scoring library's single definitions: privacy normalisation, ROC AUC and folds."""

import math

import numpy as np
import pytest

from anoncli.scoring.metrics import binary_auc, normalised_accuracy, roc_auc
from anoncli.scoring.probe import make_folds


def test_normalisation_is_one_formula_for_percentages_and_fractions():
    assert normalised_accuracy(91.37, 50.0) == pytest.approx(normalised_accuracy(0.9137, 0.5, full=1.0))
    assert normalised_accuracy(0.25, 0.25, full=1.0) == 100.0
    assert normalised_accuracy(1.0, 0.25, full=1.0) == 0.0
    assert normalised_accuracy(0.0, 0.8, full=1.0) == 0.0  # clipped, not negative


@pytest.mark.parametrize(
    "accuracy, chance", [(float("nan"), 50.0), (60.0, float("nan")), (100.0, 100.0), (40.0, 120.0)]
)
def test_normalisation_is_nan_where_it_is_undefined(accuracy, chance):
    # an unmeasured attacker (nan) or a single class (chance 100 %) has no privacy score, neither 0 nor 100
    assert math.isnan(normalised_accuracy(accuracy, chance))


def test_auc_matches_the_rank_statistic_and_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    proba = rng.dirichlet(np.ones(3), 200)
    proba[np.arange(200), y] += 0.3 * rng.random(200)
    proba = np.round(proba / proba.sum(1, keepdims=True), 2)  # ties on purpose
    assert binary_auc(y == 1, proba[:, 1]) == pytest.approx(roc_auc_score(y == 1, proba[:, 1]), abs=1e-12)
    ovr = np.mean([roc_auc_score(y == c, proba[:, c]) for c in range(3)])
    assert roc_auc(y, proba, 3) == pytest.approx(ovr, abs=1e-12)
    assert math.isnan(roc_auc(np.zeros(5, int), proba[:5], 3))


def test_group_folds_are_group_disjoint_and_every_training_side_sees_every_label():
    labels = np.repeat(["f", "m", "f", "m", "f", "m", "f"], 5)
    groups = np.repeat(list("abcdefg"), 5)
    folds = make_folds(labels, groups, 5, seed=3)
    assert len(folds) == 5 and sorted(np.concatenate(folds).tolist()) == list(range(35))
    for test in folds:
        train = np.setdiff1d(np.arange(35), test)
        assert not set(groups[test]) & set(groups[train])
        assert set(labels[train]) == {"f", "m"}
    assert [f.tolist() for f in folds] == [f.tolist() for f in make_folds(labels, groups, 5, seed=3)]


def test_stratified_folds_never_collapse_to_one_fold():
    labels = np.array(["a", "a", "a", "b", "c", "c"])
    folds = make_folds(labels, None, 5, seed=0)
    assert len(folds) == 2 and sorted(np.concatenate(folds).tolist()) == list(range(6))
    assert all(set(labels[f]) >= {"a", "c"} for f in folds)  # classes with 2+ items are in every fold
    assert make_folds([], None, 5, 0) == []
