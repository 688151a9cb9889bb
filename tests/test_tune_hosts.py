"""Tuning on several hosts, simulated on this machine: two `zoo tune` workers, each with its own
working directory and ``ZOO_HOME`` (its own copy of the prepared data, made independently), share
one Optuna study on PostgreSQL (heartbeats on) and one MLflow tracking server (scripts/server.sh,
proxied artifacts). They complete 4 distinct trials, nothing lost or run twice, both workers
contribute, every trial's run is FINISHED on the server, and every run records the same dataset
digest — the hosts trained on the same bytes. The README's multi-host recipe is these commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from postgres_server import postgres_server  # noqa: F401  (pytest fixture)
from tracking_server import tracking_server  # noqa: F401

pytestmark = pytest.mark.slow  # servers + 4 one-epoch trials on ~75 images: ~1-3 min

BIN = Path(sys.executable).parent
TINY = ["--dataset", "tiny", "--epochs", "1", "--img_size", "16", "--batch_size", "16", "--limit", "75",
        "--inner_trials", "8", "--pruner", "none", "--register", "false"]


def zoo(args, env, cwd, timeout=600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN / "zoo"), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"zoo {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def test_two_hosts_share_one_postgres_study_and_one_tracking_server(postgres_server, tracking_server,  # noqa: F811
                                                                    tmp_path):
    from mlflow.tracking import MlflowClient

    from zoo.tune.storage import open_storage

    uri, _ = tracking_server
    storage = postgres_server.create_database("optuna_hosts")
    hosts = []
    for name in ("host_a", "host_b"):
        home = tmp_path / name
        home.mkdir()
        env = {**os.environ, "ZOO_HOME": str(home), "MLFLOW_TRACKING_URI": uri, "HF_HUB_OFFLINE": "1",
               "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
               "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        for var in ("MLFLOW_RUN_ID", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID",
                    "ZOO_DATA_DIR"):
            env.pop(var, None)
        # each host prepares its own copy (in production: `dvc pull`, see tests/test_data_dvc_remote.py)
        zoo(["data", "synth", "--out", str(home / "raw"), "--n-cells", "150", "--img-size", "32", "--name", "tiny",
             "--seed", "1"], env, home)
        hosts.append((home, env))

    args = ["tune", "--family", "tml", "--trials", "2", "--study", "hosts", "--storage", storage, *TINY]
    workers = [subprocess.Popen([str(BIN / "zoo"), *args], env=env, cwd=home, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for home, env in hosts]
    for w in workers:
        out, err = w.communicate(timeout=1500)
        assert w.returncode == 0, f"worker failed:\n{out[-2000:]}\n{err[-4000:]}"

    trials = optuna.load_study(study_name="hosts", storage=open_storage(storage)).get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials), \
        [(t.number, t.state.name, t.user_attrs.get("worker"), t.user_attrs.get("error")) for t in trials]
    assert len({t.user_attrs["worker"] for t in trials}) == 2, "both hosts ran trials"
    run_ids = {t.user_attrs["mlflow_run_id"] for t in trials}
    assert len(run_ids) == 4, "a trial shared its run with another"

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    runs = [client.get_run(r) for r in run_ids]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(r.info.artifact_uri.startswith("mlflow-artifacts:") for r in runs)
    digests = {r.data.tags.get("dataset_digest") for r in runs}
    assert len(digests) == 1 and None not in digests, f"the hosts trained on different data: {digests}"
    for home, _ in hosts:
        assert not (home / "mlartifacts").exists() and not (home / "mlflow.db").exists(), "a host logged locally"
