"""The zoo through a production-shaped tracking server: ``scripts/server.sh`` on a throwaway
PostgreSQL (tests/postgres_server.py) creates the role and database, migrates the schema and starts
``mlflow server`` with proxied artifacts on loopback. A tiny TML training with
``MLFLOW_TRACKING_URI`` pointing at it registers a model whose experiment uses the proxied
``mlflow-artifacts:`` location (no client-side path); promotion and evaluation go through the server;
and a second process — another working
directory and ``ZOO_HOME``, so nothing local is shared — loads it by alias through the server and
predicts. Skipped, with the reason, where PostgreSQL cannot run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from postgres_server import postgres_server  # noqa: F401  (pytest fixtures)
from tracking_server import tracking_server  # noqa: F401

pytestmark = pytest.mark.slow  # PostgreSQL + mlflow server start, one tiny training: ~30-60 s

ROOT = Path(__file__).resolve().parents[1]

SECOND = r"""
import json, sys
import mlflow, numpy as np
client = mlflow.MlflowClient()
mv = client.get_model_version_by_alias("zoo-tml", "production")
model = mlflow.pyfunc.load_model("models:/zoo-tml@production")
out = model.predict(np.load(sys.argv[1], allow_pickle=False)["x"])
print("RESULT" + json.dumps({"version": mv.version, "source": mv.source, "columns": list(out.columns),
                             "labels": out["label"].tolist()}))
"""


def test_training_through_the_server_registers_a_model_another_process_loads_by_alias(tracking_server, tmp_path,
                                                                                       monkeypatch):
    from mlflow.tracking import MlflowClient
    from tiny_data import CLASSES, TINY, cells, make_tiny_prepared

    import zoo.families as families
    from zoo.tracking import store

    uri, state = tracking_server
    assert uri.startswith("http://127.0.0.1:")
    home = tmp_path / "trainer"
    for var in ("MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID",
                "ZOO_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ZOO_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    make_tiny_prepared(home)

    result = families.train("tml", {**TINY, **families.FAMILIES.get("tml").contract_params, "register": "true"},
                            progress=False)
    assert result.registered == "zoo-tml/1"

    # the experiment lives behind the server's artifact proxy, not at a path of this client
    assert store.is_remote() and store.experiment_artifact_location("zoo-tml") is None
    client = MlflowClient()
    exp = client.get_experiment_by_name("zoo-tml")
    assert exp.artifact_location.startswith("mlflow-artifacts:"), exp.artifact_location
    assert not (home / store.ARTIFACT_DIR).exists(), "a client wrote artifacts locally"
    assert any((state / "artifacts").rglob("zoo_model.json")), "the server's artifact store has no model"

    # promotion and evaluation go through the server too (evaluation logs a run with artifacts)
    from zoo.tracking import registry
    from zoo.tracking.evaluation import evaluate_model

    registry.promote("zoo-tml", "1", who="server-test", why="through the tracking server")
    report = evaluate_model("models:/zoo-tml@production", "tiny", fold=0, embedding_map="none")
    assert np.isfinite(report["macro_f1"])
    evaluation = client.get_run(report["run_id"])
    assert evaluation.info.artifact_uri.startswith("mlflow-artifacts:")
    assert "metrics.json" in {a.path for a in client.list_artifacts(report["run_id"])}

    # a second process elsewhere loads the version by alias through the server and predicts
    other = tmp_path / "elsewhere"
    other.mkdir()
    images = other / "x.npz"
    np.savez(images, x=cells(list(CLASSES), seed=11))
    env = {**os.environ, "ZOO_HOME": str(other), "MLFLOW_TRACKING_URI": uri, "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", SECOND, str(images)], cwd=other, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert out["version"] == "1"
    assert out["columns"][:2] == ["label", "confidence"] and len(out["labels"]) == 3
    assert set(out["labels"]) <= set(CLASSES)
    assert not (other / "mlruns").exists() and not (other / store.ARTIFACT_DIR).exists()
