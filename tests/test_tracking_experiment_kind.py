"""The zoo's experiments open in the MLflow UI as machine-learning experiments, not GenAI ones."""

from __future__ import annotations

import pytest


@pytest.fixture
def fresh_project(tmp_path, monkeypatch):
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME",
                "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    return tmp_path


def test_experiments_are_tagged_custom_model_development_new_and_existing(fresh_project):
    from mlflow import MlflowClient

    from zoo.tracking import store

    new_id = store.get_or_create_experiment("zoo-kind-new")
    client = MlflowClient()
    assert client.get_experiment(new_id).tags["mlflow.experimentKind"] == "custom_model_development"
    old_id = client.create_experiment("zoo-kind-old")  # made elsewhere (e.g. by `mlflow run`), untagged
    assert "mlflow.experimentKind" not in client.get_experiment(old_id).tags
    assert store.get_or_create_experiment("zoo-kind-old") == old_id
    assert client.get_experiment(old_id).tags["mlflow.experimentKind"] == "custom_model_development"
