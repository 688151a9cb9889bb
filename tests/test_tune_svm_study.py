"""The inner γ/C study on cached embeddings vs the fixed grid training uses."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification

from zoo.tune.spaces import load_space
from zoo.tune.svm_study import grid_baseline, resolve_gamma, tune_svm


@pytest.fixture(scope="module")
def toy():
    """Fixed toy 'embeddings': 5 overlapping classes in 32-D, on a scale where the grid's
    fixed γ values are off (the grid's 'scale' is still among them)."""
    X, y = make_classification(n_samples=360, n_features=32, n_informative=10, n_redundant=4, n_classes=5,
                               n_clusters_per_class=2, class_sep=1.0, random_state=0)
    X = X * 40.0
    return X[:220], y[:220], X[220:], y[220:], list(range(5))


def test_inner_study_beats_or_equals_the_fixed_grid(toy):
    Xtr, ytr, Xva, yva, classes = toy
    grid_score, grid_params = grid_baseline(Xtr, ytr, Xva, yva, classes=classes)
    res = tune_svm(Xtr, ytr, Xva, yva, classes=classes, n_trials=30, seed=0)
    assert res.value >= grid_score - 1e-12, (res.value, grid_score, grid_params, res.params)
    assert res.n_trials == 30 and res.val_metrics["macro_f1"] == pytest.approx(res.value)
    assert 1e-5 <= res.gamma <= 10 and 1e-2 <= res.C <= 1e4
    # the reported value is what a refit at (gamma, C) scores on the validation fold
    from sklearn.metrics import f1_score

    from zoo.evaluate.svm import SVMStage

    stage = SVMStage(calibrate=False).refit_only(Xtr, ytr, params=res.params)
    pred = stage.predict(Xva)
    assert f1_score(yva, pred, labels=np.union1d(yva, pred), average="macro") == pytest.approx(res.value)


def test_space_narrows_the_inner_study(toy):
    Xtr, ytr, Xva, yva, classes = toy
    res = tune_svm(Xtr, ytr, Xva, yva, classes=classes, n_trials=6,
                   space=load_space("svm_C: 3.0\nsvm_gamma: {low: 0.001, high: 0.01}"))
    assert res.C == 3.0 and 0.001 <= res.gamma <= 0.01


def test_minimised_metric_and_bad_inputs(toy):
    Xtr, ytr, Xva, yva, classes = toy
    sev = np.abs(np.subtract.outer(np.arange(5), np.arange(5)))
    res = tune_svm(Xtr, ytr, Xva, yva, classes=classes, severity=sev, metric="mcs", direction="minimize", n_trials=5)
    assert res.value == min(t["value"] for t in res.trials)
    with pytest.raises(ValueError, match="not a classification metric"):
        tune_svm(Xtr, ytr, Xva, yva, classes=classes, metric="nope", n_trials=1)
    with pytest.raises(ValueError, match=">= 1 trial"):
        tune_svm(Xtr, ytr, Xva, yva, classes=classes, n_trials=0)


def test_scale_gamma_is_resolved_on_standardised_features(toy):
    Xtr = toy[0]
    assert resolve_gamma("scale", Xtr) == pytest.approx(1.0 / Xtr.shape[1], rel=1e-6)
    assert resolve_gamma(0.5, Xtr) == 0.5
