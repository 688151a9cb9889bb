"""The quickstart's summary of a registered version (zoo.tracking.summary), read from a real MLflow
store: the epochs run, the precision, the budget stop, and the hint for runs the budget cut short."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from zoo.tracking.summary import FEW_EPOCHS, version_summary


@pytest.fixture
def client(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return MlflowClient()


def register(client, epochs: int, stopped_on_budget: bool, precision: str = "fp32") -> str:
    """A run with one ``epoch_seconds`` per epoch and the metrics the family logs, registered."""
    exp = client.create_experiment("zoo-guided")
    run = client.create_run(exp, tags={"precision": precision})
    rid = run.info.run_id
    client.log_param(rid, "fold", "0")
    client.log_param(rid, "dataset", "synth")
    for epoch in range(1, epochs + 1):
        client.log_metric(rid, "epoch_seconds", 30.0 + epoch, step=epoch)
    for key, value in {"test_macro_f1": 0.7391, "test_macro_f1_tolerant": 0.936, "test_mcs": 0.404,
                       "best_epoch": float(epochs - 1), "stopped_on_budget": float(stopped_on_budget)}.items():
        client.log_metric(rid, key, value, step=epochs)
    client.set_terminated(rid)
    client.create_registered_model("zoo-guided")
    mv = client.create_model_version("zoo-guided", f"runs:/{rid}/model", run_id=rid)
    client.set_registered_model_alias("zoo-guided", "production", mv.version)
    return rid


def test_a_run_the_budget_cut_short_says_so_and_how_to_train_without_it(client):
    rid = register(client, epochs=6, stopped_on_budget=True)
    lines = version_summary(client, "zoo-guided", 1, untimed_command="bash scripts/quickstart.sh -P budget=none")
    assert lines[0] == f"registered zoo-guided version 1 (@production), run {rid}"
    assert lines[1] == ("test on fold 0 of synth: macro-F 0.739 strict / 0.936 tolerant, MCS 0.404, "
                        "best epoch 5 of 6 (fp32, stopped on the time budget)")
    assert len(lines) == 3
    assert "only 6 epochs fit" in lines[2] and lines[2].endswith("bash scripts/quickstart.sh -P budget=none")
    assert version_summary(client, "zoo-guided", 1)[2].endswith("set budget=none (and epochs, e.g. 30)")


def test_a_resumed_run_counts_its_epochs_not_its_log_entries(client):
    """A run killed in epoch 4 and resumed logs epoch 4 again: still 5 epochs, not 6."""
    rid = register(client, epochs=5, stopped_on_budget=True)
    client.log_metric(rid, "epoch_seconds", 31.0, step=4)
    assert "best epoch 4 of 5 (fp32" in version_summary(client, "zoo-guided", 1)[1]


def test_a_budgeted_run_with_enough_epochs_gets_no_hint(client):
    register(client, epochs=FEW_EPOCHS, stopped_on_budget=True, precision="bf16")
    lines = version_summary(client, "zoo-guided", "1")
    assert lines[1].endswith(f"best epoch {FEW_EPOCHS - 1} of {FEW_EPOCHS} (bf16, stopped on the time budget)")
    assert len(lines) == 2


def test_a_run_without_budget_stop_gets_no_hint_however_short(client):
    register(client, epochs=3, stopped_on_budget=False)
    lines = version_summary(client, "zoo-guided", 1)
    assert lines[1].endswith("best epoch 2 of 3 (fp32)")
    assert len(lines) == 2
