"""The inner study: RBF-SVM γ and C on one trial's cached embeddings.

An encoder costs minutes; an SVM refit on its embeddings costs milliseconds to a second. So a
tuning trial trains the encoder once with its sampled α/κ/…, embeds the training and validation
folds once, and then a second Optuna study (in memory, TPE) searches γ and C on log scales — each
inner trial fits :class:`zoo.evaluate.svm.SVMStage` (standardise + RBF SVC) on the training
embeddings and scores the validation embeddings. This replaces the fixed 4×4 grid when tuning.

The inner study starts from the grid's own points (``warm_start``), so it can only match or beat
the grid on the validation fold; TPE then explores between and beyond them. The test fold is never
seen here.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from zoo.evaluate.svm import DEFAULT_CS, DEFAULT_GAMMAS, SVMStage

GAMMA_RANGE = (1e-5, 10.0)
C_RANGE = (1e-2, 1e4)
INNER_TRIALS = 40


@dataclass
class SVMStudyResult:
    gamma: float
    C: float
    value: float                       # best validation score of the metric
    metric: str
    direction: str
    n_trials: int
    seconds: float
    val_metrics: dict[str, Any] = field(default_factory=dict)   # classification_metrics at the best pair
    trials: list[dict[str, float]] = field(default_factory=list)

    @property
    def params(self) -> dict[str, float]:
        return {"gamma": self.gamma, "C": self.C}

    def as_metrics(self, prefix: str = "inner_svm_") -> dict[str, float]:
        return {f"{prefix}best_val_{self.metric}": self.value, f"{prefix}gamma": self.gamma,
                f"{prefix}C": self.C, f"{prefix}trials": float(self.n_trials), f"{prefix}seconds": self.seconds}


def resolve_gamma(gamma: Any, X: np.ndarray) -> float:
    """``"scale"`` as scikit-learn computes it — on the *standardised* features SVMStage fits on."""
    if gamma == "scale":
        Xs = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1.0)
        var = float(Xs.var())
        return 1.0 / (X.shape[1] * var) if var > 0 else 1.0
    if gamma == "auto":
        return 1.0 / X.shape[1]
    return float(gamma)


def grid_points(X: np.ndarray, gammas: Sequence[Any] = DEFAULT_GAMMAS, Cs: Sequence[float] = DEFAULT_CS):
    return [{"svm_gamma": resolve_gamma(g, X), "svm_C": float(c)} for g in gammas for c in Cs]


def _range(space: Mapping[str, Any] | None, name: str, default: tuple[float, float]) -> tuple[float, float]:
    spec = (space or {}).get(name)
    if spec is None:
        return default
    if hasattr(spec, "value"):  # Fixed
        return float(spec.value), float(spec.value)
    if hasattr(spec, "low"):
        if spec.low <= 0:
            raise ValueError(f"space entry {name!r}: γ and C are searched on a log scale, low must be > 0")
        return float(spec.low), float(spec.high)
    raise ValueError(f"space entry {name!r}: give {{low, high}} or one value")


def tune_svm(train_emb: np.ndarray, train_y: np.ndarray, val_emb: np.ndarray, val_y: np.ndarray, *,
             classes: Sequence[Any], severity: Any = None, ontology: Any = None, metric: str = "macro_f1",
             direction: str = "maximize", n_trials: int = INNER_TRIALS, seed: int = 0,
             space: Mapping[str, Any] | None = None, warm_start: bool = True,
             max_train: int | None = None) -> SVMStudyResult:
    """Search γ, C (log scales) to optimise ``metric`` of ``classification_metrics`` on the
    validation embeddings. Labels are indices into ``classes``."""
    import optuna

    from zoo.evaluate.metrics import classification_metrics

    if n_trials < 1:
        raise ValueError(f"inner SVM study needs >= 1 trial, got {n_trials}")
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be maximize or minimize, got {direction!r}")
    train_emb = np.asarray(train_emb, dtype=np.float64)
    val_emb = np.asarray(val_emb, dtype=np.float64)
    g_low, g_high = _range(space, "svm_gamma", GAMMA_RANGE)
    c_low, c_high = _range(space, "svm_C", C_RANGE)
    start = time.perf_counter()
    scores: dict[tuple[float, float], tuple[float, dict]] = {}

    def evaluate(gamma: float, C: float) -> tuple[float, dict]:
        key = (gamma, C)
        if key not in scores:
            stage = SVMStage(calibrate=False, random_state=seed, max_train=max_train)
            stage.refit_only(train_emb, train_y, params={"gamma": gamma, "C": C})
            m = classification_metrics(val_y, stage.predict(val_emb), classes, severity=severity, ontology=ontology)
            if metric not in m:
                raise ValueError(f"metric {metric!r} is not a classification metric; known: "
                                 f"{', '.join(k for k, v in m.items() if isinstance(v, float))}")
            scores[key] = (float(m[metric]), m)
        return scores[key]

    def objective(trial) -> float:
        gamma = g_low if g_low == g_high else trial.suggest_float("svm_gamma", g_low, g_high, log=True)
        C = c_low if c_low == c_high else trial.suggest_float("svm_C", c_low, c_high, log=True)
        return evaluate(gamma, C)[0]

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # 40 inner trials would flood the log
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=seed))
    if warm_start:
        for point in grid_points(train_emb)[:n_trials]:
            clipped = {k: v for k, v in point.items()
                       if (k == "svm_gamma" and g_low < g_high and g_low <= v <= g_high)
                       or (k == "svm_C" and c_low < c_high and c_low <= v <= c_high)}
            if len(clipped) == (g_low < g_high) + (c_low < c_high) and clipped:
                study.enqueue_trial(clipped)
    try:
        study.optimize(objective, n_trials=n_trials)
    finally:
        optuna.logging.set_verbosity(level)  # the outer study's trial lines stay visible
    best = study.best_trial
    gamma = best.params.get("svm_gamma", g_low)
    C = best.params.get("svm_C", c_low)
    value, val_metrics = evaluate(gamma, C)
    trials = [{"gamma": t.params.get("svm_gamma", g_low), "C": t.params.get("svm_C", c_low), "value": t.value}
              for t in study.trials if t.value is not None and math.isfinite(t.value)]
    return SVMStudyResult(gamma=float(gamma), C=float(C), value=value, metric=metric, direction=direction,
                          n_trials=len(study.trials), seconds=time.perf_counter() - start,
                          val_metrics=val_metrics, trials=trials)


def grid_baseline(train_emb, train_y, val_emb, val_y, *, classes, severity=None, ontology=None,
                  metric: str = "macro_f1", seed: int = 0, max_search: int | None = None) -> tuple[float, dict]:
    """The fixed grid as training uses it: γ/C picked by inner CV on the training embeddings, then
    scored on the validation embeddings. Returns (score, best_params)."""
    from zoo.evaluate.metrics import classification_metrics

    stage = SVMStage(calibrate=False, random_state=seed, max_search=max_search).fit(train_emb, train_y)
    m = classification_metrics(val_y, stage.predict(val_emb), classes, severity=severity, ontology=ontology)
    return float(m[metric]), dict(stage.best_params_)
