"""MLflow runs of a study: one parent run per study and worker, one nested child run per trial.

Written here rather than with ``optuna_integration.MLflowCallback``: that callback is deprecated,
logs one flat run per trial *after* it finished (so a trial's own training run cannot be that
run), and knows nothing of pruned or dead trials. Here the child run exists before the trial
trains, so the family's training run *is* the child (the runner attaches to it through
``MLFLOW_RUN_ID``, exactly as under ``mlflow run``), and:

* the child's run id is in the trial's user attributes (``mlflow_run_id``), the trial number and
  study in the run's tags (``trial_number``, ``study``), its final state in ``trial_state``;
* a pruned trial's run ends ``KILLED`` with ``trial_state=PRUNED``, a failed one ``FAILED`` with
  the error in ``trial_error``; no child is ever left ``RUNNING`` by a live worker;
* a trial whose worker died (SIGKILL, lost machine) is found by the storage's heartbeat (or, for
  the journal storage, by its dead pid) and :meth:`StudyRuns.mark_dead` ends its run ``FAILED``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

log = logging.getLogger(__name__)

PARENT_ID = "mlflow.parentRunId"
RUN_NAME = "mlflow.runName"
_ENV = "MLFLOW_RUN_ID"


def _client():
    from mlflow.tracking import MlflowClient

    from zoo.tracking import store

    uri = store.tracking_uri()
    if uri.startswith("sqlite:///"):
        # Workers started together on a fresh SQLite store would race through MLflow's schema
        # migrations ("Online migration expected to match one row"): the first one migrates, the
        # others wait on a lock file beside the database (filelock: cross-platform file locks).
        from filelock import FileLock

        db = Path(uri[len("sqlite:///"):])
        db.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(db) + ".lock", timeout=600):
            store.configure()
            client = MlflowClient()
            client.search_experiments(max_results=1)  # forces the schema check/migration now
        return client
    store.configure()
    return MlflowClient()


def end_if_running(client, run_id: str, status: str, tags: Mapping[str, str] | None = None) -> bool:
    """Set ``tags`` and end ``run_id`` with ``status`` unless it already ended; True if it did."""
    from mlflow.entities import RunTag

    run = client.get_run(run_id)
    if tags:
        client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])
    if run.info.status in ("RUNNING", "SCHEDULED"):
        client.set_terminated(run_id, status)
        return True
    return False


def mark_dead(study, trial) -> None:
    """Storage callback for a trial whose worker died: its child run (and the dead worker's parent
    run) end FAILED/KILLED instead of staying RUNNING forever."""
    client = _client()
    run_id = trial.user_attrs.get("mlflow_run_id")
    if run_id:
        end_if_running(client, run_id, "FAILED", {
            "trial_state": "FAIL", "trial_error": "worker lost mid-trial (no heartbeat / process gone); "
                                                  "parameters re-queued once"})
    parent = trial.user_attrs.get("mlflow_parent_run_id")
    if parent:
        end_if_running(client, parent, "KILLED", {"worker_state": "lost"})


def retried_from(trial) -> int | None:
    """The number of the dead trial this one re-runs (Optuna's retry callback records it in the
    system attributes, which a live ``Trial`` no longer exposes)."""
    study = getattr(trial, "study", None)
    if study is None:
        return None
    frozen = study.get_trials(deepcopy=False)[trial.number]
    return frozen.system_attrs.get("failed_trial")


class StudyRuns:
    """The MLflow side of one worker of one study."""

    def __init__(self, study_name: str, family: str, *, worker: str, storage: str,
                 tags: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None):
        from zoo.tracking import store
        from zoo.tracking.runs import experiment_name, git_commit

        self.client = _client()
        self.study_name, self.family, self.worker = study_name, family, worker
        self.experiment_id = store.get_or_create_experiment(experiment_name(family))
        parent_tags = {"study": study_name, "worker": worker, "optuna_storage": storage, "family": family,
                       "tune_role": "study", "git_commit": git_commit(), **dict(tags or {})}
        env_run = os.environ.get(_ENV)
        if env_run:  # `mlflow run -e tune` made this worker's run: it becomes the parent
            self.parent_id = env_run
            self._owns_parent = False
            self.experiment_id = self.client.get_run(env_run).info.experiment_id
        else:
            run = self.client.create_run(self.experiment_id, run_name=f"tune-{study_name}-{worker}")
            self.parent_id = run.info.run_id
            self._owns_parent = True
        self.set_tags(self.parent_id, parent_tags)
        if params:
            from zoo.tracking.runs import TrackedRun

            TrackedRun(self.parent_id).log_params(params)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(str(k), str(v)[:5000]) for k, v in tags.items()
                                            if v is not None])

    @contextmanager
    def trial_run(self, trial, run_name: str | None = None) -> Iterator[str]:
        """A child run for ``trial`` that the family's training attaches to; ended with the
        trial's outcome whatever happens inside."""
        import optuna

        run = self.client.create_run(self.experiment_id, run_name=run_name or f"{self.study_name}-t{trial.number}",
                                     tags={PARENT_ID: self.parent_id})
        run_id = run.info.run_id
        retry_of = retried_from(trial)
        self.set_tags(run_id, {"study": self.study_name, "trial_number": trial.number, "worker": self.worker,
                                "tune_role": "trial", "retry_of_trial": retry_of})
        trial.set_user_attr("mlflow_run_id", run_id)        # overwrites a retried trial's old run
        trial.set_user_attr("mlflow_parent_run_id", self.parent_id)
        trial.set_user_attr("worker", self.worker)
        previous = os.environ.get(_ENV)
        os.environ[_ENV] = run_id
        status, tags = "FINISHED", {"trial_state": "COMPLETE"}
        try:
            yield run_id
        except optuna.TrialPruned as exc:
            status, tags = "KILLED", {"trial_state": "PRUNED", "trial_pruned_at": str(exc)}
            raise
        except Exception as exc:
            status, tags = "FAILED", {"trial_state": "FAIL", "trial_error": f"{type(exc).__name__}: {exc}"}
            raise
        except BaseException:  # Ctrl-C: the trial is not finished, say so
            status, tags = "KILLED", {"trial_state": "FAIL", "trial_error": "interrupted"}
            raise
        finally:
            if previous is None:
                os.environ.pop(_ENV, None)
            else:
                os.environ[_ENV] = previous
            import mlflow

            while mlflow.active_run() is not None and mlflow.active_run().info.run_id == run_id:
                mlflow.end_run(status)  # a training that raised inside the fluent run
            # the training's own context ended the run FAILED when it raised TrialPruned: fix it
            run_now = self.client.get_run(run_id)
            self.set_tags(run_id, tags)
            if run_now.info.status != status and (run_now.info.status == "RUNNING" or status != "FINISHED"):
                self.client.set_terminated(run_id, status)

    def log_trial(self, run_id: str, metrics: Mapping[str, float] | None = None,
                  tags: Mapping[str, Any] | None = None) -> None:
        from zoo.tracking.runs import TrackedRun

        if metrics:
            TrackedRun(run_id).log_metrics(metrics)
        if tags:
            self.set_tags(run_id, tags)

    def log_summary(self, study, metrics: Mapping[str, float], summary: Mapping[str, Any]) -> None:
        from zoo.tracking.runs import TrackedRun

        run = TrackedRun(self.parent_id)
        run.log_metrics(metrics)
        run.log_dict(dict(summary), "optuna/study_summary.json")
        frame = study.trials_dataframe(attrs=("number", "state", "value", "values", "params", "user_attrs",
                                              "duration")) if study.trials else None
        if frame is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "trials.csv"
                frame.to_csv(path, index=False)
                run.log_artifact(path, "optuna")

    def log_plots(self, study, target_names: list[str]) -> list[str]:
        """Optimisation history, parameter importances, parallel coordinates (and the Pareto
        front for two objectives) as self-contained HTML under ``optuna/`` of the parent run."""
        import optuna.visualization as vis
        from optuna.trial import TrialState

        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            log.warning("no complete trial yet: no study plots")
            return []
        multi = len(target_names) > 1
        target = (lambda t: t.values[0]) if multi else None
        name = target_names[0]
        makers = {
            "optimization_history": lambda: vis.plot_optimization_history(study, target=target, target_name=name),
            "param_importances": lambda: vis.plot_param_importances(study, target=target, target_name=name),
            "parallel_coordinate": lambda: vis.plot_parallel_coordinate(study, target=target, target_name=name),
        }
        if multi:
            makers["pareto_front"] = lambda: vis.plot_pareto_front(study, target_names=target_names)
        logged = []
        with tempfile.TemporaryDirectory() as tmp:
            for key, make in makers.items():
                try:
                    fig = make()
                except (ValueError, RuntimeError, ZeroDivisionError) as exc:
                    # importances need >= 2 complete trials whose parameters vary
                    log.info("study plot %s skipped: %s", key, exc)
                    continue
                path = Path(tmp) / f"{key}.html"
                fig.write_html(str(path), include_plotlyjs=True)  # opens offline, from the artifact
                self.client.log_artifact(self.parent_id, str(path), "optuna")
                logged.append(f"optuna/{key}.html")
        return logged

    def finish(self, status: str = "FINISHED") -> None:
        end_if_running(self.client, self.parent_id, status, {"worker_state": status.lower()})
