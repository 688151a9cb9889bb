"""Split conformal sets (zoo.evaluate.conformal) on a toy with known probabilities: coverage over
many random calibration/test splits, set sizes vs model quality, Mondrian per-class coverage,
persistence as data."""

from __future__ import annotations

import numpy as np
import pytest

from conformal_toy import calibrated_toy, softmax
from zoo.evaluate.conformal import SCORES, SplitConformal, conformal_quantile, set_coverage, set_metrics


def _split_coverage(probs, y, alpha, n_splits, n_cal, seed=0, **kw):
    """Coverage and mean set size on the test half of ``n_splits`` random splits."""
    rng = np.random.default_rng(seed)
    covs, sizes = [], []
    for _ in range(n_splits):
        perm = rng.permutation(len(y))
        cal, test = perm[:n_cal], perm[n_cal:]
        cp = SplitConformal(**kw).fit(probs[cal], y[cal])
        sets = cp.predict_set(probs[test], 1 - alpha)
        covs.append(set_coverage(sets, y[test]).mean())
        sizes.append(sets.sum(axis=1).mean())
    return np.array(covs), np.array(sizes)


@pytest.mark.parametrize("score", ["aps", "raps"])
@pytest.mark.parametrize("alpha", [0.1, 0.05])
def test_coverage_over_random_splits_is_at_least_one_minus_alpha(score, alpha):
    probs, y = calibrated_toy(2000, 10, sharpness=1.5, seed=1)
    covs, _ = _split_coverage(probs, y, alpha, n_splits=200, n_cal=1000, score=score)
    assert covs.mean() >= 1 - alpha - 0.02
    # not trivially: the sets are far from "every class"
    assert covs.mean() < 1 - alpha / 4


def test_coverage_holds_for_an_overconfident_model():
    """The guarantee does not need calibrated probabilities: an overconfident model (temperature
    1/4 on the true logits) still covers — with larger sets than its accuracy would suggest."""
    rng = np.random.default_rng(2)
    logits = 1.0 * rng.normal(size=(2000, 8))
    y = np.array([rng.choice(8, p=p) for p in softmax(logits)])
    overconfident = softmax(4.0 * logits)
    covs, _ = _split_coverage(overconfident, y, 0.1, n_splits=150, n_cal=1000)
    assert covs.mean() >= 0.88
    naive = (overconfident.argmax(1) == y).mean()
    assert naive < 0.7  # the raw top class alone would miss far more than 10 %


def test_set_sizes_shrink_as_the_model_improves():
    sizes = []
    for sharpness in (0.5, 1.5, 3.0, 6.0):
        probs, y = calibrated_toy(2000, 10, sharpness, seed=3)
        covs, size = _split_coverage(probs, y, 0.1, n_splits=40, n_cal=1000)
        assert covs.mean() >= 0.88
        sizes.append(size.mean())
    assert all(a > b for a, b in zip(sizes, sizes[1:])), sizes
    assert sizes[0] > 2 * sizes[-1]


def _imbalanced_with_a_blind_spot(n, seed):
    """Five classes with priors 50/30/15/4/1 %; the model never recognises the rarest class (its
    cells look like one of the others), so a marginal threshold ignores it."""
    rng = np.random.default_rng(seed)
    y = rng.choice(5, size=n, p=[0.5, 0.3, 0.15, 0.04, 0.01])
    shown = np.where(y == 4, rng.integers(0, 4, size=n), y)
    logits = 3.0 * np.eye(5)[shown] + rng.normal(size=(n, 5))
    return softmax(logits), y


def test_mondrian_covers_every_class_where_marginal_misses_the_rare_one():
    probs, y = _imbalanced_with_a_blind_spot(8000, seed=4)
    rng = np.random.default_rng(5)
    per_class = {True: [], False: []}
    for _ in range(60):
        perm = rng.permutation(len(y))
        cal, test = perm[:4000], perm[4000:]
        for mondrian in (True, False):
            sets = SplitConformal(mondrian=mondrian).fit(probs[cal], y[cal]).predict_set(probs[test], 0.9)
            hit = set_coverage(sets, y[test])
            per_class[mondrian].append([hit[y[test] == c].mean() for c in range(5)])
    mondrian, marginal = np.mean(per_class[True], axis=0), np.mean(per_class[False], axis=0)
    assert (mondrian >= 0.88).all(), mondrian
    assert marginal[4] < 0.5, marginal  # why the option exists


def test_mondrian_class_with_too_few_calibration_cells_gets_every_label():
    probs, y = calibrated_toy(300, 4, 2.0, seed=6)
    keep = (y != 3) | (np.arange(len(y)) < np.flatnonzero(y == 3)[3])  # 3 cells of class 3
    cp = SplitConformal(mondrian=True).fit(probs[keep], y[keep])
    assert cp.calibration_counts()[3] == 3
    assert np.isinf(cp.thresholds(0.9)[3])  # 3 cells cannot certify 90 %: honest, not a guess
    assert cp.predict_set(probs, 0.9)[:, 3].all()


def test_conformal_quantile_is_the_finite_sample_order_statistic():
    s = np.arange(1, 11, dtype=float)  # n = 10
    assert conformal_quantile(s, 0.8) == 9.0  # ceil(11 * 0.8) = 9th smallest
    assert conformal_quantile(s, 0.9) == 10.0  # ceil(9.9) = 10
    assert np.isinf(conformal_quantile(s, 0.95))  # ceil(10.45) = 11 > n
    assert conformal_quantile(np.arange(1, 100, dtype=float), 0.9) == 90.0  # (n+1)·0.9 = 90 exactly


def test_aps_and_raps_scores_by_hand():
    p = np.array([[0.1, 0.6, 0.3]])
    np.testing.assert_allclose(SCORES.get("aps")(p), [[1.0, 0.6, 0.9]])
    # ranks 3, 1, 2; penalty lam·max(0, rank − k_reg) with k_reg=1
    np.testing.assert_allclose(SCORES.get("raps")(p, lam=0.5, k_reg=1), [[2.0, 0.6, 1.4]])


def test_sets_are_never_empty_and_grow_with_coverage():
    probs, y = calibrated_toy(600, 6, 2.0, seed=7)
    cp = SplitConformal().fit(probs[:300], y[:300])
    s90, s99 = cp.predict_set(probs[300:], 0.9), cp.predict_set(probs[300:], 0.99)
    assert s90.sum(axis=1).min() >= 1
    assert (s90 <= s99).all() and s99.sum() > s90.sum()
    assert s90[np.arange(300), probs[300:].argmax(1)].all()  # the top class is always in


def test_save_load_roundtrip_is_data_only(tmp_path):
    probs, y = calibrated_toy(400, 5, 2.0, seed=8)
    cp = SplitConformal(score="raps", mondrian=True, lam=0.05, k_reg=1).fit(probs[:200], y[:200])
    cp.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conformal.json", "conformal.npz"]
    with np.load(tmp_path / "conformal.npz", allow_pickle=False) as data:  # no object arrays
        assert set(data.files) == {"scores", "labels"}
    back = SplitConformal.load(tmp_path)
    assert back.config() == cp.config()
    np.testing.assert_array_equal(back.predict_set(probs[200:], 0.85), cp.predict_set(probs[200:], 0.85))


def test_bad_inputs_name_the_problem():
    probs, y = calibrated_toy(50, 3, 1.0)
    with pytest.raises(ValueError, match="coverage must be in"):
        SplitConformal().fit(probs, y).predict_set(probs, 90)
    with pytest.raises(ValueError, match="class indices"):
        SplitConformal().fit(probs, y + 5)
    with pytest.raises(ValueError, match="3 class columns; the calibration has"):
        SplitConformal().fit(probs, y, n_classes=4).predict_set(probs, 0.9)
    with pytest.raises(KeyError, match="aps"):
        SplitConformal(score="lac").fit(probs, y)
    with pytest.raises(RuntimeError, match="not fitted"):
        SplitConformal().predict_set(probs)


def test_set_metrics_overall_and_per_class():
    sets = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=bool)
    y = np.array([0, 0, 2, 1])
    m = set_metrics(sets, y, ["a", "b", "c"])
    assert m["coverage"] == 0.75 and m["set_size"] == 7 / 4
    assert m["coverage_a"] == 0.5 and m["set_size_a"] == 1.5
    assert m["coverage_b"] == 1.0 and m["set_size_b"] == 3.0
