"""One tuning trial: sample the family's space, train one fold as the trial's child run, search
the SVM's γ/C on the cached embeddings, return the validation objective(s).

Two Trainer callbacks carry the tuning into the family's own training (through
``FoldContext.callbacks``), so no family knows it is being tuned:

* :class:`PruningCallback` reports ``val_<primary>`` to the trial after every epoch and stops a
  trial the pruner (median / Hyperband) gives up on;
* :class:`InnerSVMCallback` runs the inner γ/C study on the best epoch's training and validation
  embeddings when the fit ends, and hands the runner the tuned SVM instead of the grid's — so the
  trial's packaged model and its test metrics use the tuned γ/C.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence


from zoo.train.callbacks import Callback
from zoo.tune.spaces import SpaceTrial, fixed_values
from zoo.tune.svm_study import INNER_TRIALS, SVMStudyResult, tune_svm

log = logging.getLogger(__name__)


class PruningCallback(Callback):
    """Report ``monitor`` (``val_<primary>``) at each epoch; raise ``optuna.TrialPruned`` when the
    pruner says so. (optuna-integration has callbacks for Lightning/Keras, not for this Trainer.)"""

    def __init__(self, trial, monitor: str):
        self.trial, self.monitor = trial, monitor

    def on_epoch_end(self, trainer, epoch: int, metrics: dict[str, float]) -> None:
        import optuna

        value = metrics.get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return  # an epoch without validation (svm_every) or a degenerate score: nothing to say
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"epoch {epoch}: {self.monitor}={float(value):.4f}")

    @property
    def state_key(self) -> str:
        return "zoo.tune.PruningCallback"


class InnerSVMCallback(Callback):
    """At the end of the fit (best weights restored): embed train and validation once, run the
    inner γ/C study, and replace the fit's SVM stage with one refitted at the best pair."""

    def __init__(self, metric: str, direction: str, n_trials: int = INNER_TRIALS, seed: int = 0,
                 space: Mapping[str, Any] | None = None):
        self.metric, self.direction, self.n_trials, self.seed, self.space = metric, direction, n_trials, seed, space
        self.result: SVMStudyResult | None = None
        self.embed_seconds = 0.0

    def on_fit_end(self, trainer, result) -> None:
        import time

        from zoo.evaluate.svm import SVMStage

        if getattr(trainer, "svm_template", None) is None or trainer.val_loader is None:
            return  # not an embedding family (no SVM stage): the trial's own val metric counts
        start = time.perf_counter()
        best_is_last = result.best_epoch is not None and result.best_epoch == trainer.epoch
        if best_is_last and trainer.last_train_embeddings is not None and trainer.last_val_embeddings is not None:
            (tr, ty), (va, vy) = trainer.last_train_embeddings, trainer.last_val_embeddings
        else:  # the model now holds the best epoch's weights: embed again
            loader = trainer.train_eval_loader if trainer.train_eval_loader is not None else trainer.train_loader
            tr, ty = trainer.svm_embed(loader, desc="embed train (inner SVM)")
            va, vy = trainer.svm_embed(trainer.val_loader, desc="embed val (inner SVM)")
        self.embed_seconds = time.perf_counter() - start
        classes = trainer.classes if trainer.classes is not None else list(range(int(max(ty.max(), vy.max())) + 1))
        self.result = tune_svm(tr, ty, va, vy, classes=classes, severity=trainer.severity, ontology=trainer.ontology,
                               metric=self.metric, direction=self.direction, n_trials=self.n_trials,
                               seed=self.seed, space=self.space,
                               max_train=getattr(trainer.svm_template, "max_train", None))
        tuned = SVMStage(calibrate=False, random_state=self.seed,
                         max_train=getattr(trainer.svm_template, "max_train", None))
        result.svm = tuned.refit_only(tr, ty, params=self.result.params)
        trainer.logger.log_metrics({**self.result.as_metrics(), "inner_svm_embed_seconds": self.embed_seconds},
                                   step=trainer.epoch)

    @property
    def state_key(self) -> str:
        return "zoo.tune.InnerSVMCallback"


class CheckpointCleanup(Callback):
    """Remembers the trial's checkpoint folder so the objective can delete it once the trial is
    over: a trial's model is logged in its run, a dead trial is re-run from scratch, and ~170 MB of
    resnet18 checkpoints per trial would fill a disk in a long study."""

    def __init__(self):
        self.directory = None

    def on_fit_start(self, trainer) -> None:
        self.directory = getattr(trainer, "checkpoint_dir", None)

    def remove(self) -> None:
        import shutil

        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def state_key(self) -> str:
        return "zoo.tune.CheckpointCleanup"


@dataclass
class TrialOutcome:
    values: list[float]
    metrics: dict[str, float]
    model_uri: str | None
    run_id: str
    inner: SVMStudyResult | None = None
    sampled: dict[str, Any] = field(default_factory=dict)


def objective_names(primary: str, multi: bool) -> list[str]:
    return [f"val_{primary}", "val_mcs"] if multi else [f"val_{primary}"]


class TrialObjective:
    """``study.optimize(TrialObjective(...))``: one trial = one family training on one fold."""

    def __init__(self, family: str, family_obj, base_raw: Mapping[str, Any], overrides: Mapping[str, Any], *,
                 runs, primary: str, direction: str, multi: bool, pruning: bool, inner_trials: int, seed: int,
                 train=None, before_trial=None):
        self.family, self.fam, self.base_raw = family, family_obj, dict(base_raw)
        self.overrides, self.runs = dict(overrides), runs
        self.primary, self.direction, self.multi, self.pruning = primary, direction, multi, pruning
        self.inner_trials, self.seed = inner_trials, seed
        self.before_trial = before_trial
        if train is None:
            from zoo.families.runner import run_training as train
        self.train = train
        self.last: TrialOutcome | None = None

    def sample(self, trial) -> dict[str, Any]:
        proxy = SpaceTrial(trial, self.overrides)
        sampled = dict(self.fam.search_space(proxy) or {})
        for name, value in proxy.fixed.items():
            trial.set_user_attr(f"fixed_{name}", value)
        return sampled

    def __call__(self, trial) -> float | Sequence[float]:
        if self.before_trial is not None:
            self.before_trial()
        sampled = self.sample(trial)
        # a YAML-fixed value wins even when the family samples it under another name
        # (guided samples one_minus_kappa and returns kappa)
        raw = {**self.base_raw, **sampled, **fixed_values(self.overrides), "register": "false"}
        cleanup = CheckpointCleanup()
        callbacks: list[Callback] = [cleanup]
        if self.pruning:
            callbacks.append(PruningCallback(trial, f"val_{self.primary}"))
        inner = None
        if self.inner_trials > 0:
            inner = InnerSVMCallback(self.primary, self.direction, n_trials=self.inner_trials,
                                     seed=self.seed + trial.number, space=self.overrides)
            callbacks.append(inner)
        with self.runs.trial_run(trial) as run_id:
            try:
                result = self.train(self.family, raw, progress=False, callbacks=callbacks)
            except Exception as exc:
                import optuna

                if not isinstance(exc, optuna.TrialPruned):
                    trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
                raise
            finally:
                cleanup.remove()
            fold = result.folds[0]
            metrics = dict(fold.metrics)
            values = [self._value(metrics, inner, self.primary)]
            if self.multi:
                values.append(self._value(metrics, inner, "mcs"))
            for name, v in zip(objective_names(self.primary, self.multi), values):
                trial.set_user_attr(f"objective_{name}", v)
            for key in (f"test_{self.primary}", "test_mcs", "best_epoch"):
                if key in metrics:  # shown beside the objective, never optimised on
                    trial.set_user_attr(key, float(metrics[key]))
            if inner is not None and inner.result is not None:
                trial.set_user_attr("svm_gamma", inner.result.gamma)
                trial.set_user_attr("svm_C", inner.result.C)
            if fold.model_uri:
                trial.set_user_attr("model_uri", fold.model_uri)
                trial.set_user_attr("version_tags", self._version_tags(raw, fold))
            self.runs.log_trial(run_id, metrics={f"objective_{n}": v for n, v in
                                                 zip(objective_names(self.primary, self.multi), values)},
                                tags={"trial_params": sampled})
            self.last = TrialOutcome(values, metrics, fold.model_uri, run_id, inner.result if inner else None, sampled)
        return values if self.multi else values[0]

    def _version_tags(self, raw: Mapping[str, Any], fold) -> dict[str, str]:
        """The tags the runner would put on this trial's registered version (family variant
        tags, gate tags: n_test, test_rows_digest, primary metric...), kept for ``register_best``."""
        tags: dict[str, Any] = {}
        try:
            from zoo.families.runner import build_family

            fam = build_family(self.family, raw)
            tags.update(fam.tags())
            tags.update(fam.gate_tags())
        except Exception as exc:  # tags are a convenience; the trial's result stands without them
            log.warning("could not rebuild the family for version tags: %s", exc)
        tags.update(getattr(fold, "gate", None) or {})
        for key in (f"test_{self.primary}", "test_mcs"):
            if key in fold.metrics:
                tags[key] = repr(float(fold.metrics[key]))
        return {str(k): str(v) for k, v in tags.items() if v is not None}

    @staticmethod
    def _value(metrics: Mapping[str, float], inner: InnerSVMCallback | None, name: str) -> float:
        """The tuned SVM's validation score when the inner study ran, else the training's best
        ``val_<name>``; never a test metric."""
        if inner is not None and inner.result is not None:
            if name == inner.metric:
                return float(inner.result.value)
            if name in inner.result.val_metrics:
                return float(inner.result.val_metrics[name])
        key = f"val_{name}"
        if key not in metrics or not math.isfinite(float(metrics[key])):
            raise RuntimeError(f"the training reported no finite {key} (metrics: {', '.join(sorted(metrics))})")
        return float(metrics[key])
