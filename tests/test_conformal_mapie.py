"""Our hand-written split conformal against MAPIE 1.x (the field's library), which the pyfunc
cannot use directly (see zoo/evaluate/conformal.py): same finite-sample order statistic, and on
the same calibrated toy both reach the level with comparable APS set sizes."""

from __future__ import annotations

import numpy as np
import pytest

from conformal_toy import calibrated_toy
from zoo.evaluate.conformal import SplitConformal, conformal_quantile, set_coverage

mapie_classification = pytest.importorskip("mapie.classification", reason="MAPIE is a dev dependency (pip install mapie)")
from mapie.utils import _compute_classification_quantile  # noqa: E402
from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402


class ProbabilityColumns(ClassifierMixin, BaseEstimator):
    """A 'prefit' estimator whose features are the pyfunc's probabilities: how MAPIE would have
    to see our models."""

    def __init__(self, n_classes: int = 2):
        self.n_classes = n_classes

    def fit(self, X, y=None):
        self.classes_ = np.arange(self.n_classes)
        return self

    def predict_proba(self, X):
        return np.asarray(X, dtype=float)

    def predict(self, X):
        return np.asarray(X).argmax(axis=1)


@pytest.mark.parametrize("n", [9, 50, 99, 500])
@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
def test_quantile_matches_mapie(n, coverage):
    scores = np.random.default_rng(n).random(n)
    ours = conformal_quantile(scores, coverage)
    if np.isinf(ours):  # too few scores for the level: every label (MAPIE refuses these n)
        assert (n + 1) * coverage > n
        return
    theirs = float(np.ravel(_compute_classification_quantile(scores.reshape(-1, 1), np.array([1 - coverage])))[0])
    assert ours == pytest.approx(theirs)


def test_aps_sets_compare_with_mapie_on_a_calibrated_toy():
    probs, y = calibrated_toy(4000, 8, 1.5, seed=11)
    cal, test = slice(0, 2000), slice(2000, None)
    ours = SplitConformal(score="aps").fit(probs[cal], y[cal]).predict_set(probs[test], 0.9)
    mapie = mapie_classification.SplitConformalClassifier(
        estimator=ProbabilityColumns(8).fit(probs[cal]), confidence_level=0.9, conformity_score="aps",
        prefit=True, random_state=0,
    ).conformalize(probs[cal], y[cal])
    _, theirs = mapie.predict_set(probs[test], conformity_score_params={"include_last_label": True})
    theirs = theirs[:, :, 0]
    cov_ours, cov_theirs = set_coverage(ours, y[test]).mean(), set_coverage(theirs, y[test]).mean()
    assert cov_ours >= 0.88 and cov_theirs >= 0.88
    # MAPIE's "include last label" sets are the conservative variant; ours are no larger on average
    # and within one class of theirs.
    size_ours, size_theirs = ours.sum(1).mean(), theirs.sum(1).mean()
    assert size_ours <= size_theirs + 0.05
    assert size_theirs - size_ours < 1.0
