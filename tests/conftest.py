"""Test-session hygiene shared by every test file.

MLflow writes ``MLFLOW_TRACKING_URI`` and ``MLFLOW_REGISTRY_URI`` into ``os.environ`` whenever
``mlflow.set_tracking_uri`` / ``set_registry_uri`` run (``zoo.tracking.store.configure`` calls both),
so a test that points MLflow at its temporary store would leak that store into every later test and
into the subprocesses they start. Each test gets back the MLflow variables it started with.
"""

import os

import pytest

_MLFLOW_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID",
                "MLFLOW_EXPERIMENT_NAME")


@pytest.fixture(autouse=True)
def _restore_mlflow_environment():
    before = {k: os.environ.get(k) for k in _MLFLOW_VARS}
    yield
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def one_torch_thread():
    """One torch thread for tests on tiny tensors: two OpenMP threads on a busy 2-core machine spin
    ~30x slower than one."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
