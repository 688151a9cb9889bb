"""`zoo tune` end to end on a tiny synthetic set: two concurrent workers (journal storage, and
PostgreSQL on loopback) complete 4 distinct trials; a rerun adds trials and registers the best as
@candidate; a SIGKILLed worker's trial is retried and its child run ends FAILED; target=svm
registers a new version with the same encoder weights. Each trial trains 1 epoch on ~60 images."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from postgres_server import postgres_server, postgres_url  # noqa: F401  (pytest fixtures)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow

TINY = ["--dataset", "tiny", "--epochs", "1", "--img_size", "16", "--batch_size", "16", "--limit", "75",
        "--inner_trials", "8", "--pruner", "none"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("tune-home")
    env = dict(os.environ, ZOO_HOME=str(home), MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
               HF_HUB_OFFLINE="1", MPLBACKEND="Agg", OMP_NUM_THREADS="1",  # 2 workers on 2 cores
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("MLFLOW_RUN_ID", None)
    run(["data", "synth", "--out", str(home / "raw"), "--n-cells", "150", "--img-size", "32", "--name", "tiny",
         "--seed", "1"], env, home)
    return home, env


def run(args, env, cwd, check=True, timeout=1500) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN / "zoo"), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"zoo {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-5000:]}")
    return proc


def tune(env, cwd, *args):
    return subprocess.Popen([str(BIN / "zoo"), "tune", *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=1500) -> str:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"worker failed ({proc.returncode}):\n{out[-3000:]}\n{err[-5000:]}")
    return out


def client(env):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])


def load(study: str, storage: str):
    from zoo.tune.storage import open_storage

    return optuna.load_study(study_name=study, storage=open_storage(storage))


def check_two_workers(env, study_name: str, storage: str, n: int = 4) -> optuna.Study:
    """The study holds n distinct complete trials, each with its own FINISHED child run under one
    of the workers' parent runs; nothing lost, nothing counted twice."""
    study = load(study_name, storage)
    trials = study.get_trials()
    assert len(trials) == n, [(t.number, t.state) for t in trials]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(n))
    run_ids = [t.user_attrs["mlflow_run_id"] for t in trials]
    assert len(set(run_ids)) == n
    assert len({t.user_attrs["worker"] for t in trials}) == 2   # both workers did trials
    c = client(env)
    parents = set()
    for t, rid in zip(trials, run_ids):
        r = c.get_run(rid)
        assert r.info.status == "FINISHED" and r.data.tags["trial_number"] == str(t.number)
        assert r.data.tags["study"] == study_name
        parents.add(r.data.tags["mlflow.parentRunId"])
    assert len(parents) == 2
    for pid in parents:
        assert c.get_run(pid).info.status == "FINISHED"
    return study


def test_two_journal_workers_then_rerun_adds_trials_and_registers(home):
    home, env = home
    storage = f"journal:{home / 'studies' / 'tml.log'}"
    args = ["--family", "tml", "--trials", "2", "--study", "two", "--storage", storage, *TINY, "--register", "false"]
    workers = [tune(env, home, *args) for _ in range(2)]
    for w in workers:
        finish(w)
    check_two_workers(env, "two", storage)
    assert not list((home / "checkpoints").glob("tml/*"))  # each trial's checkpoints went with it

    out = finish(tune(env, home, "--family", "tml", "--trials", "1", "--study", "two", "--storage", storage, *TINY))
    study = load("two", storage)
    assert len(study.trials) == 5 and "registered zoo-tml/" in out
    mv = client(env).get_model_version_by_alias("zoo-tml", "candidate")
    assert mv.tags["study"] == "two" and mv.tags["trial_number"] == str(study.best_trial.number)
    assert mv.run_id == study.best_trial.user_attrs["mlflow_run_id"]
    experiment = client(env).get_run(mv.run_id).info.experiment_id
    parent = client(env).search_runs([experiment], filter_string="tags.tune_role = 'study' and tags.study = 'two'")
    assert len(parent) == 3  # one parent run per worker and study
    assert any("optuna/param_importances.html" in {a.path for a in client(env).list_artifacts(p.info.run_id, "optuna")}
               for p in parent)


def test_two_postgres_workers(home, postgres_url):  # noqa: F811
    home, env = home
    args = ["--family", "tml", "--trials", "2", "--study", "pg", "--storage", postgres_url, *TINY,
            "--register", "false"]
    workers = [tune(env, home, *args) for _ in range(2)]
    for w in workers:
        finish(w)
    check_two_workers(env, "pg", postgres_url)


def test_killed_worker_trial_is_retried_and_its_run_not_left_running(home):
    home, env = home
    env = dict(env, ZOO_TUNE_HEARTBEAT="1", ZOO_TUNE_GRACE="3")
    storage = f"sqlite:///{home / 'kill.db'}"
    args = ["--family", "tml", "--trials", "1", "--study", "kill", "--storage", storage, *TINY, "--register", "false"]
    worker = tune(env, home, *args)
    c = client(env)
    deadline = time.time() + 600
    try:
        while True:  # kill it mid-trial: once its child run exists
            assert worker.poll() is None, worker.communicate()[1][-3000:]
            assert time.time() < deadline, "the worker never started a trial"
            if os.path.exists(home / "kill.db"):
                try:
                    study = load("kill", storage)
                    if study.trials and study.trials[0].user_attrs.get("mlflow_run_id"):
                        break
                except KeyError:
                    pass
            time.sleep(1)
        time.sleep(3)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    dead = load("kill", storage).trials[0]
    assert dead.state == optuna.trial.TrialState.RUNNING
    assert c.get_run(dead.user_attrs["mlflow_run_id"]).info.status == "RUNNING"
    time.sleep(4)  # past the grace period

    finish(tune(env, home, *args))  # the next worker finds the stale trial and runs it again
    trials = load("kill", storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    assert trials[1].params == dead.params and trials[1].system_attrs["failed_trial"] == 0
    old = c.get_run(dead.user_attrs["mlflow_run_id"])
    assert old.info.status == "FAILED" and old.data.tags["trial_state"] == "FAIL"
    new = c.get_run(trials[1].user_attrs["mlflow_run_id"])
    assert new.info.status == "FINISHED" and new.data.tags["retry_of_trial"] == "0"
    assert new.info.run_id != old.info.run_id


def test_target_svm_registers_a_new_version_with_the_same_encoder(home, tmp_path):
    import mlflow

    home, env = home
    run(["train", "tml", "--dataset", "tiny", "--epochs", "1", "--img_size", "16", "--batch_size", "16",
         "--limit", "75"], env, home)
    c = client(env)
    source = c.get_model_version_by_alias("zoo-tml", "candidate")
    out = run(["tune", "--target", "svm", "--model", f"models:/zoo-tml/{source.version}", "--inner_trials", "12"],
              env, home).stdout
    new = c.get_model_version_by_alias("zoo-tml", "candidate")
    assert int(new.version) == int(source.version) + 1 and f"registered zoo-tml/{new.version}" in out
    assert new.tags["source_model"] == f"zoo-tml/{source.version}" and new.tags["tuned_by"] == "optuna-svm"
    assert new.tags["test_rows_digest"] == source.tags["test_rows_digest"]  # the gates can compare them
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    mlflow.set_registry_uri(env["MLFLOW_TRACKING_URI"])
    a = Path(mlflow.artifacts.download_artifacts(f"models:/zoo-tml/{source.version}", dst_path=str(tmp_path / "a")))
    b = Path(mlflow.artifacts.download_artifacts(f"models:/zoo-tml/{new.version}", dst_path=str(tmp_path / "b")))
    enc_a, enc_b = next(a.rglob("encoder.safetensors")), next(b.rglob("encoder.safetensors"))
    assert enc_a.read_bytes() == enc_b.read_bytes()
    assert new.tags["svm_C"] and new.tags["svm_gamma"]
