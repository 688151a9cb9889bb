"""Study storages (zoo.tune.storage): the three forms, clear errors, and a dead worker's trial
failed, its child run ended and its parameters re-queued once (RDB heartbeat; journal: dead pid)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest

from postgres_server import postgres_server, postgres_url  # noqa: F401  (pytest fixtures)
from zoo.tune.storage import (default_storage_url, fail_dead_local_trials, mask_password, open_storage,
                              parse_storage)

ROOT = Path(__file__).resolve().parents[1]


def test_parse_the_three_forms(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    assert parse_storage(None).url == default_storage_url() == f"sqlite:///{tmp_path}/optuna.db"
    spec = parse_storage(f"journal:{tmp_path}/s/j.log")
    assert spec.kind == "journal" and spec.url == str(tmp_path / "s" / "j.log") and not spec.has_heartbeat
    pg = parse_storage("postgres://zoo:secret@db.lab:5432/optuna")
    assert pg.kind == "rdb" and pg.url.startswith("postgresql://") and "secret" not in pg.display
    assert mask_password("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    with pytest.raises(ValueError, match="journal:<path>.*postgresql://"):
        parse_storage("redis://localhost")
    with pytest.raises(ValueError, match="needs a file path"):
        parse_storage("journal:")


def test_journal_storage_is_shared_between_handles(tmp_path):
    url = f"journal:{tmp_path}/study.log"
    a = optuna.create_study(study_name="s", storage=open_storage(url))
    a.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    b = optuna.load_study(study_name="s", storage=open_storage(url))
    assert [t.number for t in b.trials] == [0, 1]


def test_unreachable_server_is_a_clear_error():
    with pytest.raises(ValueError, match=r"cannot open storage postgresql\+psycopg2://zoo:\*\*\*@127.0.0.1:9/.*Fix"):
        open_storage("postgresql+psycopg2://zoo:pw@127.0.0.1:9/none")


@pytest.mark.slow
def test_postgres_storage_with_heartbeat(postgres_url):  # noqa: F811
    storage = open_storage(postgres_url, heartbeat_interval=1, grace_period=2)
    assert storage.get_heartbeat_interval() == 1
    study = optuna.create_study(study_name="pg", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    assert len(optuna.load_study(study_name="pg", storage=open_storage(postgres_url)).trials) == 3


WORKER = textwrap.dedent("""
    import os, sys, time
    import optuna
    from zoo.tune.mlflow_nesting import StudyRuns
    from zoo.tune.storage import open_storage, worker_id
    storage = open_storage(sys.argv[1], heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name="kill", storage=storage, load_if_exists=True)
    runs = StudyRuns("kill", "tml", worker=worker_id(), storage=sys.argv[1])
    def objective(trial):
        trial.suggest_float("x", 0, 1)
        with runs.trial_run(trial):
            open(sys.argv[2], "w").write(str(trial.number))
            time.sleep(600)
    study.optimize(objective, n_trials=1)
""")


def _start_and_kill(url: str, tmp_path: Path, env: dict) -> None:
    flag = tmp_path / "started"
    proc = subprocess.Popen([sys.executable, "-c", WORKER, url, str(flag)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not flag.exists():
            if proc.poll() is not None:
                raise AssertionError(f"worker exited early: {proc.stderr.read()[-2000:]}")
            if time.time() > deadline:
                raise AssertionError("worker never started its trial")
            time.sleep(0.2)
        time.sleep(1.5)  # a few heartbeats
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal", "postgres"])
def test_killed_worker_trial_is_failed_requeued_once_and_its_run_ended(kind, tmp_path, monkeypatch, request):
    from mlflow.tracking import MlflowClient

    from zoo.tracking import store
    from zoo.tune.mlflow_nesting import mark_dead

    url = {"sqlite": f"sqlite:///{tmp_path}/optuna.db", "journal": f"journal:{tmp_path}/j.log"}.get(kind)
    if kind == "postgres":
        url = request.getfixturevalue("postgres_url")
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store.configure()
    env = {**os.environ, "ZOO_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_RUN_ID", None)
    _start_and_kill(url, tmp_path, env)

    storage = open_storage(url, on_stale=mark_dead, heartbeat_interval=1, grace_period=2)
    study = optuna.load_study(study_name="kill", storage=storage)
    dead = study.trials[0]
    assert dead.state == optuna.trial.TrialState.RUNNING
    if kind == "journal":
        assert fail_dead_local_trials(study, on_stale=mark_dead) == [0]
    else:
        time.sleep(3)  # past the grace period
        optuna.storages.fail_stale_trials(study)
    trials = study.trials
    assert trials[0].state == optuna.trial.TrialState.FAIL
    assert [t.state for t in trials[1:]] == [optuna.trial.TrialState.WAITING]
    assert trials[1].params == dead.params and trials[1].system_attrs["failed_trial"] == 0
    child = MlflowClient().get_run(dead.user_attrs["mlflow_run_id"])
    assert child.info.status == "FAILED" and child.data.tags["trial_state"] == "FAIL"

    # the next worker runs the queued copy; a second death would not be retried again (max_retry=1)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert study.trials[1].state == optuna.trial.TrialState.COMPLETE
    assert study.trials[1].params == dead.params and len(study.trials) == 2
