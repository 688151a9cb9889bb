"""The SVM stage: an sklearn estimator (StandardScaler + RBF SVC, grid search, calibration)."""

from __future__ import annotations

import io
import warnings

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs, make_circles
from sklearn.exceptions import NotFittedError

from zoo.evaluate import SVMStage

FAST = dict(gammas=("scale", 0.1), Cs=(1.0, 10.0))


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(150, n_features=12, centers=3, cluster_std=1.0, random_state=0)
    return X * 50 + 7, y  # off-scale on purpose: the stage standardises


def test_fits_separable_blobs_with_calibrated_probabilities(blobs):
    X, y = blobs
    svm = SVMStage(**FAST).fit(X, y)
    assert (svm.predict(X) == y).mean() == 1.0
    assert svm.best_params_["gamma"] in FAST["gammas"] and svm.best_params_["C"] in FAST["Cs"]
    assert svm.searched_ and svm.n_splits_ == 3 and svm.best_score_ == pytest.approx(1.0)
    proba = svm.predict_proba(X)
    assert proba.shape == (150, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert (proba.argmax(axis=1) == y).mean() == 1.0
    assert svm.decision_function(X).shape == (150, 3)
    assert list(svm.classes_) == [0, 1, 2]
    assert svm.calibrated_.ensemble is False  # one SVC refit on all data, not an ensemble


def test_grid_search_picks_the_gamma_that_fits():
    # Concentric circles: a nearly linear kernel (tiny gamma) fails, gamma=1 separates them.
    X, y = make_circles(120, factor=0.3, noise=0.05, random_state=0)
    svm = SVMStage(gammas=(1e-4, 1.0), Cs=(1.0,)).fit(X, y)
    assert svm.best_params_ == {"gamma": 1.0, "C": 1.0}
    scores = dict(zip(svm.cv_results_["param_svc__gamma"], svm.cv_results_["mean_test_score"]))
    assert scores[1.0] > 0.95 > 0.7 > scores[1e-4]


def test_params_are_settable_and_clonable(blobs):
    svm = SVMStage()
    assert svm.get_params()["cv"] == 3 and svm.get_params()["scoring"] == "f1_macro"
    svm.set_params(Cs=(0.5,), gammas=(0.01,), cv=2, max_train=60)
    copy = clone(svm)
    assert copy.get_params() == svm.get_params() and not hasattr(copy, "best_params_")
    copy.fit(*blobs)
    assert copy.best_params_ == {"gamma": 0.01, "C": 0.5} and not copy.searched_
    with pytest.raises(ValueError, match="cv must be >= 2"):
        SVMStage(cv=1).fit(*blobs)


def test_tiny_classes_reduce_the_folds_with_a_warning():
    X, y = make_blobs(40, n_features=4, centers=[[0] * 4, [6] * 4, [-6] * 4], random_state=1)
    keep = np.r_[np.flatnonzero(y == 0), np.flatnonzero(y == 1), np.flatnonzero(y == 2)[:2]]
    with pytest.warns(UserWarning, match="using 2 folds"):
        svm = SVMStage(**FAST, cv=5).fit(X[keep], y[keep])
    assert svm.n_splits_ == 2
    np.testing.assert_allclose(svm.predict_proba(X).sum(axis=1), 1.0, atol=1e-9)

    single = np.r_[np.flatnonzero(y == 0), np.flatnonzero(y == 1), np.flatnonzero(y == 2)[:1]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        svm = SVMStage(**FAST).fit(X[single], y[single])
    messages = " ".join(str(w.message) for w in caught)
    assert "single training sample" in messages
    assert set(svm.classes_) == {0, 1, 2}
    np.testing.assert_allclose(svm.predict_proba(X).sum(axis=1), 1.0, atol=1e-9)


def test_refit_only_reuses_the_best_params(blobs):
    X, y = blobs
    with pytest.raises(NotFittedError):
        SVMStage().refit_only(X, y)
    svm = SVMStage(**FAST).fit(X, y)
    best = dict(svm.best_params_)
    svm.refit_only(X[:90], y[:90])
    assert svm.best_params_ == best and not svm.searched_
    fresh = SVMStage(**FAST).refit_only(X, y, params={"gamma": 0.1, "C": 10.0})
    assert fresh.best_params_ == {"gamma": 0.1, "C": 10.0} and (fresh.predict(X) == y).all()
    with pytest.raises(ValueError, match="missing"):
        SVMStage().refit_only(X, y, params={"C": 1.0})


def test_max_train_subsamples_but_keeps_every_class():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(300, int), np.ones(300, int), np.full(3, 2)]
    X = rng.normal(size=(len(y), 5)) + y[:, None] * 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rare class is topped up to cv=3 samples: no fold warnings
        svm = SVMStage(**FAST, max_train=60).fit(X, y)
    assert list(svm.classes_) == [0, 1, 2]
    assert 60 <= svm.scaler_.n_samples_seen_ <= 63


def test_string_labels_and_predict_from_proba(blobs):
    X, y = blobs
    names = np.array(["blast", "lymphocyte", "monocyte"])[y]
    svm = SVMStage(**FAST, predict_from="proba").fit(X, names)
    assert list(svm.classes_) == ["blast", "lymphocyte", "monocyte"]
    pred = svm.predict(X)
    assert (pred == names).all()
    np.testing.assert_array_equal(pred, svm.classes_[svm.predict_proba(X).argmax(axis=1)])


def test_joblib_round_trip_predicts_the_same(blobs):
    X, y = blobs
    svm = SVMStage(**FAST).fit(X, y)
    buf = io.BytesIO()
    joblib.dump(svm, buf)
    buf.seek(0)
    loaded = joblib.load(buf)
    np.testing.assert_array_equal(loaded.predict(X), svm.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), svm.predict_proba(X))


def test_bad_inputs(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="at least 2 classes"):
        SVMStage().fit(X, np.zeros(len(X)))
    with pytest.raises(NotFittedError):
        SVMStage().predict(X)
    svm = SVMStage(**FAST).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        svm.predict(X[:, :5])


def test_uncalibrated_stage_predicts_but_has_no_probabilities_and_search_subsamples():
    from sklearn.datasets import make_blobs
    from sklearn.exceptions import NotFittedError

    X, y = make_blobs(n_samples=300, centers=3, n_features=8, random_state=0)
    fast = SVMStage(calibrate=False, max_search=60, random_state=0).fit(X, y)
    assert fast.calibrated_ is None and (fast.predict(X) == y).mean() > 0.95
    with pytest.raises(NotFittedError, match="calibrate=False"):
        fast.predict_proba(X)
    # the final fit used every sample even though the search saw 60
    assert fast.svc_.support_vectors_.shape[0] <= 300 and fast.n_features_in_ == 8
    full = SVMStage(random_state=0).refit_only(X, y, params=fast.best_params_)
    np.testing.assert_allclose(full.predict_proba(X).sum(1), 1.0)


def test_packaged_svm_searches_again_when_the_best_epoch_only_refitted_a_stale_pair():
    from zoo.families.embedding import packaged_svm

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    X = rng.normal(size=(120, 5)) + y[:, None] * 1.5
    stale = SVMStage(random_state=0, calibrate=False).refit_only(X, y, params={"gamma": 100.0, "C": 0.01})
    fresh = packaged_svm(stale, X, y, seed=0, max_search=None)
    assert fresh.searched_ and fresh.best_params_ == SVMStage(random_state=0).fit(X, y).best_params_
    assert fresh.best_params_ != {"gamma": 100.0, "C": 0.01}
    searched = SVMStage(random_state=0, calibrate=False).fit(X, y)
    kept = packaged_svm(searched, X, y, seed=0, max_search=None)
    assert not kept.searched_ and kept.best_params_ == searched.best_params_
    assert kept.calibrated_ is not None  # the packaged one has probabilities
