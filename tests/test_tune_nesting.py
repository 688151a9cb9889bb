"""MLflow nesting of a study (zoo.tune.mlflow_nesting) with a toy objective: parent run per
worker, one child per trial (its id in the trial's user attrs, the trial number in its tags),
pruned/failed trials marked, no run left RUNNING, study plots on the parent."""

from __future__ import annotations

import os

import optuna
import pytest

from zoo.tracking.runs import start_run
from zoo.tune.mlflow_nesting import StudyRuns, mark_dead

pytestmark = pytest.mark.slow  # one SQLite MLflow store for the module: ~15 s of schema migrations


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow store for the module (creating a SQLite store costs ~10 s of migrations)."""
    from mlflow.tracking import MlflowClient

    from zoo.tracking import store as zstore

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_HOME", str(tmp_path_factory.mktemp("tune-nesting")))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_RUN_ID", raising=False)
        zstore.configure()
        yield MlflowClient()


def toy_study(runs: StudyRuns, n: int = 6):
    """Trial 1 raises, trial 2 is pruned, the rest complete; each 'trains' by attaching a run to
    MLFLOW_RUN_ID the way the family runner does under mlflow run."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        y = trial.suggest_categorical("y", ["a", "b"])
        with runs.trial_run(trial) as run_id:
            assert os.environ["MLFLOW_RUN_ID"] == run_id
            with start_run("tml", params={"x": x, "y": y}) as run:
                assert run.run_id == run_id  # the training attached to the trial's child run
                run.log_metrics({"val_macro_f1": x}, step=1)
                if trial.number == 1:
                    raise RuntimeError("diverged")
                if trial.number == 2:
                    raise optuna.TrialPruned("epoch 1")
            return x

    study.optimize(objective, n_trials=n, catch=(RuntimeError,))
    return study


def test_parent_and_one_child_per_trial_with_states(store):
    runs = StudyRuns("toy", "tml", worker="host-1", storage="memory")
    study = toy_study(runs)
    plots = runs.log_plots(study, ["val_macro_f1"])
    runs.finish()
    assert "MLFLOW_RUN_ID" not in os.environ

    parent = store.get_run(runs.parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["study"] == "toy" and parent.data.tags["worker"] == "host-1"
    children = store.search_runs([parent.info.experiment_id],
                                 filter_string=f"tags.mlflow.parentRunId = '{runs.parent_id}'")
    assert len(children) == len(study.trials) == 6
    by_number = {int(r.data.tags["trial_number"]): r for r in children}
    for trial in study.trials:
        child = by_number[trial.number]
        assert trial.user_attrs["mlflow_run_id"] == child.info.run_id
        assert child.data.tags["study"] == "toy"
        assert child.data.params["x"] == str(trial.params["x"])
    assert by_number[1].info.status == "FAILED" and by_number[1].data.tags["trial_state"] == "FAIL"
    assert "diverged" in by_number[1].data.tags["trial_error"]
    assert by_number[2].info.status == "KILLED" and by_number[2].data.tags["trial_state"] == "PRUNED"
    assert {by_number[k].info.status for k in (0, 3, 4, 5)} == {"FINISHED"}
    assert all(r.info.status != "RUNNING" for r in children)
    assert study.trials[1].state == optuna.trial.TrialState.FAIL
    assert study.trials[2].state == optuna.trial.TrialState.PRUNED

    logged = {f.path for f in store.list_artifacts(runs.parent_id, "optuna")}
    assert {"optuna/optimization_history.html", "optuna/param_importances.html",
            "optuna/parallel_coordinate.html"} <= logged == set(plots) | logged
    html = store.download_artifacts(runs.parent_id, "optuna/optimization_history.html")
    assert "plotly" in open(html).read(200_000).lower()


def test_mark_dead_ends_the_child_run_failed(store):
    runs = StudyRuns("toy", "tml", worker="host-2", storage="memory")
    study = optuna.create_study()
    trial = study.ask()
    cm = runs.trial_run(trial)
    run_id = cm.__enter__()  # the worker "dies" here: the context never exits
    os.environ.pop("MLFLOW_RUN_ID", None)
    assert store.get_run(run_id).info.status == "RUNNING"
    mark_dead(study, study.trials[0])
    child = store.get_run(run_id)
    assert child.info.status == "FAILED" and child.data.tags["trial_state"] == "FAIL"
    assert store.get_run(runs.parent_id).info.status == "KILLED"


def test_mlflow_run_parent_is_reused(store, monkeypatch):
    from zoo.tracking import store as zstore

    exp = zstore.get_or_create_experiment("zoo-tml")
    outer = store.create_run(exp)
    monkeypatch.setenv("MLFLOW_RUN_ID", outer.info.run_id)
    runs = StudyRuns("toy", "tml", worker="host-3", storage="memory")
    assert runs.parent_id == outer.info.run_id
    study = optuna.create_study()
    trial = study.ask()
    with runs.trial_run(trial) as child:
        assert os.environ["MLFLOW_RUN_ID"] == child
    assert os.environ["MLFLOW_RUN_ID"] == outer.info.run_id  # restored for the outer run
    assert store.get_run(child).data.tags["mlflow.parentRunId"] == outer.info.run_id


def test_multi_objective_study_reports_the_pareto_front(store, monkeypatch):
    import zoo.families.runner as runner
    from zoo.tune.study import TuneRequest, plan, summarise

    monkeypatch.setattr(runner, "load_dataset", lambda name: type("D", (), {"n_folds": 6, "name": name})())
    p = plan(TuneRequest(family="tml", objectives="primary,mcs", pruner="none", register="false", study="mo"))
    assert p.multi
    study = optuna.create_study(directions=["maximize", "minimize"])
    points = [(0.5, 2.0), (0.6, 2.5), (0.4, 1.0), (0.55, 2.6), (0.3, 1.5)]  # (macro-F, MCS)
    for f1, mcs in points:
        t = study.ask()
        t.suggest_float("margin", 0.02, 0.5)
        study.tell(t, [f1, mcs])
    runs = StudyRuns("mo", "tml", worker="host-4", storage="memory")
    report = summarise(study, p, runs, ["val_macro_f1", "val_mcs"])
    runs.finish()
    assert sorted(b["number"] for b in report.best) == [0, 1, 2]  # 3 and 4 are dominated
    assert report.registered is None and "Pareto front" in report.describe()
    logged = {f.path for f in store.list_artifacts(runs.parent_id, "optuna")}
    assert "optuna/pareto_front.html" in logged and "optuna/study_summary.json" in logged
