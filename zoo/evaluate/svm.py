"""The SVM stage: classify embeddings with a standardised RBF SVM (the papers' classifier).

γ and C are chosen by grid search with stratified inner cross-validation on the *training*
embeddings (papers: every 5 epochs; :meth:`SVMStage.refit_only` reuses the last best pair in
between). Probabilities come from ``CalibratedClassifierCV(SVC(...), ensemble=False)``:
``SVC(probability=True)`` is deprecated in scikit-learn 1.9. ``predict`` is the SVM's own decision
(as in the papers); ``predict_from="proba"`` makes it the arg-max of the calibrated probabilities
instead, so that a label always agrees with its highest probability.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils import resample
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

log = logging.getLogger(__name__)

DEFAULT_GAMMAS: tuple[Any, ...] = ("scale", 1e-3, 1e-2, 1e-1)
DEFAULT_CS: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)


class SVMStage(ClassifierMixin, BaseEstimator):
    """StandardScaler + RBF SVC with a (gamma, C) grid search and calibrated probabilities.

    Parameters:
        gammas, Cs: the grid (``"scale"`` allowed among the gammas).
        cv: inner stratified folds for the search and the calibration; reduced (with a warning)
            when the smallest class has fewer samples.
        scoring: scikit-learn scorer name for the search.
        max_train: fit on at most this many samples (stratified subsample; every class kept).
        max_search: grid-search on at most this many samples (the final fit still uses up to
            ``max_train``). The search costs |grid| x cv fits, the final fit one: subsampling only
            the search is what keeps per-epoch validation cheap on a CPU.
        calibrate: fit the probability calibration (3 more SVC fits). Validation during training
            only needs ``predict``; the final, packaged SVM needs ``predict_proba``.
        calibration: "sigmoid" or "isotonic" (``CalibratedClassifierCV(method=...)``).
        predict_from: "svc" (the SVM decision, default) or "proba" (arg-max probability).
        random_state, n_jobs: as in scikit-learn.

    Fitted attributes: ``best_params_`` ({"gamma", "C"}), ``best_score_`` (NaN without search),
    ``cv_results_``, ``n_splits_``, ``classes_``, ``scaler_``, ``svc_``, ``calibrated_``,
    ``n_features_in_``, ``searched_`` (False after :meth:`refit_only`), ``fit_seconds_`` and
    ``final_fit_seconds_`` (the part of it a :meth:`refit_only` would also cost).
    """

    def __init__(
        self,
        gammas: Sequence[Any] = DEFAULT_GAMMAS,
        Cs: Sequence[float] = DEFAULT_CS,
        cv: int = 3,
        scoring: str = "f1_macro",
        max_train: int | None = None,
        max_search: int | None = None,
        calibrate: bool = True,
        calibration: str = "sigmoid",
        predict_from: str = "svc",
        random_state: int | None = 0,
        n_jobs: int | None = 1,
    ) -> None:
        self.gammas = gammas
        self.Cs = Cs
        self.cv = cv
        self.scoring = scoring
        self.max_train = max_train
        self.max_search = max_search
        self.calibrate = calibrate
        self.calibration = calibration
        self.predict_from = predict_from
        self.random_state = random_state
        self.n_jobs = n_jobs

    # --- fitting ------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any) -> "SVMStage":
        """Grid-search (gamma, C) with inner CV, then fit scaler, SVC and calibration on all of X."""
        X, y = self._check_fit_input(X, y)
        start = time.perf_counter()
        X, y = self._subsample(X, y)
        counts = np.unique(y, return_counts=True)[1]
        X_search, y_search = self._subsample(X, y, self.max_search)
        grid = {"svc__gamma": list(self.gammas), "svc__C": [float(c) for c in self.Cs]}
        n_candidates = len(grid["svc__gamma"]) * len(grid["svc__C"])
        n_splits = self._n_splits(np.unique(y_search, return_counts=True)[1], purpose="grid search")
        if n_candidates == 1 or n_splits < 2:
            if n_candidates > 1:
                warnings.warn(
                    f"SVMStage: too few samples per class ({counts.min()}) for a cross-validated grid search; "
                    f"using gamma={grid['svc__gamma'][0]!r}, C={grid['svc__C'][0]} (first grid values)",
                    UserWarning, stacklevel=2,
                )
            self.best_params_ = {"gamma": grid["svc__gamma"][0], "C": grid["svc__C"][0]}
            self.best_score_ = float("nan")
            self.cv_results_ = {}
        else:
            search = GridSearchCV(
                Pipeline([("scale", StandardScaler()), ("svc", SVC(kernel="rbf"))]),
                grid,
                scoring=self.scoring,
                cv=StratifiedKFold(n_splits, shuffle=True, random_state=self.random_state),
                n_jobs=self.n_jobs,
                refit=False,  # the final fit below also calibrates; no need to fit twice
                error_score="raise",
            )
            with warnings.catch_warnings():
                # folds that miss a tiny class make f1 "ill-defined"; the reduced-cv warning covers it
                warnings.filterwarnings("ignore", message=".*(ill-defined|least populated class).*")
                search.fit(X_search, y_search)
            best = search.best_params_
            self.best_params_ = {"gamma": best["svc__gamma"], "C": float(best["svc__C"])}
            self.best_score_ = float(search.best_score_)
            self.cv_results_ = {
                k: v for k, v in search.cv_results_.items() if k.startswith(("param", "mean_test", "std_test", "rank"))
            }
        self.n_splits_ = n_splits
        self._fit_final(X, y, counts)
        self.searched_ = n_candidates > 1 and n_splits >= 2
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def default_params(self) -> dict[str, Any]:
        """The pair used before any search: scikit-learn's SVC defaults (gamma "scale", C 1) where
        the grid holds them, else the grid's first values."""
        gammas, cs = list(self.gammas), [float(c) for c in self.Cs]
        return {"gamma": "scale" if "scale" in gammas else gammas[0], "C": 1.0 if 1.0 in cs else cs[0]}

    def search_seconds_estimate(self) -> float:
        """What a grid search (:meth:`fit`) would add to the last final fit, from that fit's time:
        |grid| x ``cv`` fits, each taken to cost a whole final fit. It over-estimates (each search
        fit sees (cv-1)/cv of at most ``max_search`` samples, and SVC fits grow faster than
        linearly): the budget's stop rule would rather end a run early than overrun it."""
        if not hasattr(self, "final_fit_seconds_"):
            raise NotFittedError("search_seconds_estimate needs a fitted SVMStage (fit or refit_only)")
        n_candidates = len(list(self.gammas)) * len(list(self.Cs))
        return 0.0 if n_candidates == 1 else n_candidates * max(2, int(self.cv)) * float(self.final_fit_seconds_)

    def refit_only(self, X: Any, y: Any, params: dict[str, Any] | None = None) -> "SVMStage":
        """Refit scaler, SVC and calibration with ``params`` (default: the stored ``best_params_``),
        without a grid search. Used between searches (and after resuming, with saved params)."""
        if params is None:
            if not hasattr(self, "best_params_"):
                raise NotFittedError("SVMStage.refit_only needs best_params_: call fit() first or pass params=")
            params = self.best_params_
        missing = {"gamma", "C"} - set(params)
        if missing:
            raise ValueError(f"params must hold 'gamma' and 'C', missing {sorted(missing)}")
        X, y = self._check_fit_input(X, y)
        start = time.perf_counter()
        X, y = self._subsample(X, y)
        counts = np.unique(y, return_counts=True)[1]
        self.best_params_ = {"gamma": params["gamma"], "C": float(params["C"])}
        if not hasattr(self, "best_score_"):
            self.best_score_ = float("nan")
            self.cv_results_ = {}
        self.n_splits_ = self._n_splits(counts, purpose="calibration", warn=False)
        self._fit_final(X, y, counts)
        self.searched_ = False
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _fit_final(self, X: np.ndarray, y: np.ndarray, counts: np.ndarray) -> None:
        start = time.perf_counter()
        self._fit_scaler_svc_calibration(X, y, counts)
        self.final_fit_seconds_ = time.perf_counter() - start

    def _fit_scaler_svc_calibration(self, X: np.ndarray, y: np.ndarray, counts: np.ndarray) -> None:
        self.scaler_ = StandardScaler().fit(X)
        Xs = self.scaler_.transform(X)
        svc = SVC(kernel="rbf", gamma=self.best_params_["gamma"], C=self.best_params_["C"],
                  random_state=self.random_state)
        n_cal = self._n_splits(counts, purpose="calibration", warn=False)
        if not self.calibrate:
            self.svc_ = svc.fit(Xs, y)
            self.calibrated_ = None
        elif n_cal >= 2:
            # ensemble=False: cross-validated decision values fit the sigmoid, then one SVC is
            # refit on all of X — that SVC is the classifier we keep (no second fit needed).
            self.calibrated_ = CalibratedClassifierCV(
                svc, method=self.calibration, ensemble=False,
                cv=StratifiedKFold(n_cal, shuffle=True, random_state=self.random_state),
            ).fit(Xs, y)
            self.svc_ = self.calibrated_.calibrated_classifiers_[0].estimator
        else:
            warnings.warn(
                "SVMStage: a class has a single training sample; probabilities are calibrated on the training "
                "set itself (optimistic). Add samples for that class for honest probabilities.",
                UserWarning, stacklevel=3,
            )
            self.svc_ = svc.fit(Xs, y)
            with warnings.catch_warnings():  # the frozen SVC is not refit; the fold split is moot
                warnings.filterwarnings("ignore", message=".*least populated class.*")
                self.calibrated_ = CalibratedClassifierCV(
                    FrozenEstimator(self.svc_), method=self.calibration, ensemble=False
                ).fit(Xs, y)
        self.classes_ = self.svc_.classes_

    # --- prediction ---------------------------------------------------------------------------
    def decision_function(self, X: Any) -> np.ndarray:
        Xs = self._transform(X)  # checks fitted before touching svc_
        return self.svc_.decision_function(Xs)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Calibrated probabilities, columns in ``classes_`` order, rows summing to 1."""
        Xs = self._transform(X)
        if self.calibrated_ is None:
            raise NotFittedError("this SVMStage was fitted with calibrate=False: no probabilities; "
                                 "refit with calibrate=True (e.g. refit_only) to get predict_proba")
        return self.calibrated_.predict_proba(Xs)

    def predict(self, X: Any) -> np.ndarray:
        if self.predict_from == "proba":
            return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
        if self.predict_from != "svc":
            raise ValueError(f"predict_from must be 'svc' or 'proba', got {self.predict_from!r}")
        Xs = self._transform(X)
        return self.svc_.predict(Xs)

    # --- helpers ------------------------------------------------------------------------------
    def _transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, ["scaler_", "svc_"])
        X = check_array(X, dtype=np.float64)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but SVMStage was fitted with {self.n_features_in_}")
        return self.scaler_.transform(X)

    def _check_fit_input(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        if self.predict_from not in ("svc", "proba"):
            raise ValueError(f"predict_from must be 'svc' or 'proba', got {self.predict_from!r}")
        if self.calibration not in ("sigmoid", "isotonic"):
            raise ValueError(f"calibration must be 'sigmoid' or 'isotonic', got {self.calibration!r}")
        if int(self.cv) < 2:
            raise ValueError(f"cv must be >= 2 folds, got {self.cv}")
        if not len(self.gammas) or not len(self.Cs):
            raise ValueError("gammas and Cs must each hold at least one value")
        X, y = check_X_y(X, y, dtype=np.float64)
        check_classification_targets(y)
        if np.unique(y).size < 2:
            raise ValueError(f"SVMStage needs at least 2 classes in y, got {np.unique(y).tolist()}")
        self.n_features_in_ = X.shape[1]
        return X, y

    def _n_splits(self, counts: np.ndarray, purpose: str, warn: bool = True) -> int:
        """Folds usable for stratified CV given the class counts (< 2 means: no CV possible)."""
        n = min(int(self.cv), int(counts.min()))
        if n < 2 and purpose == "grid search" and counts.max() >= 2:
            # A singleton class cannot be in every fold, but the search over the other classes is
            # still meaningful: StratifiedKFold(2) puts it in one test fold.
            n = 2
            if warn:
                warnings.warn(
                    f"SVMStage: {int((counts < 2).sum())} class(es) with a single training sample; "
                    "grid search uses 2 folds and cannot score those classes",
                    UserWarning, stacklevel=3,
                )
        elif warn and 2 <= n < int(self.cv):
            warnings.warn(
                f"SVMStage: smallest class has {counts.min()} samples < cv={self.cv}; using {n} folds for the {purpose}",
                UserWarning, stacklevel=3,
            )
        return n

    def _subsample(self, X: np.ndarray, y: np.ndarray, limit: int | None | str = "max_train") -> tuple[np.ndarray, np.ndarray]:
        limit = self.max_train if limit == "max_train" else limit
        if not limit or len(y) <= int(limit):
            return X, y
        idx = resample(np.arange(len(y)), n_samples=int(limit), replace=False, stratify=y,
                       random_state=self.random_state)
        # resample's stratification rounds rare classes down (to zero, even): top every class up
        # to min(its size, cv) samples so it stays known to the SVM and usable for inner CV.
        rng = np.random.default_rng(self.random_state)
        chosen = np.zeros(len(y), dtype=bool)
        chosen[idx] = True
        for c in np.unique(y):
            members = np.flatnonzero(y == c)
            need = min(len(members), int(self.cv)) - int(chosen[members].sum())
            if need > 0:
                chosen[rng.choice(members[~chosen[members]], size=need, replace=False)] = True
        return X[chosen], y[chosen]
