"""The default store and run setup (zoo.tracking.store, zoo.tracking.runs): one SQLite store in the
project, explicit artifact locations, runs attached to `mlflow run`'s run, params once, CV summary."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

from zoo.tracking import runs, store  # noqa: E402


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory):
    """An initialised, empty MLflow SQLite file: creating one runs MLflow's ~50 schema migrations
    (seconds), so each test starts from a copy instead."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def fresh_project(tmp_path, monkeypatch):
    """A throw-away project folder; no MLFLOW_TRACKING_URI, so the zoo default store is used."""
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME",
                "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    yield tmp_path
    if mlflow.active_run():
        mlflow.end_run()


@pytest.fixture
def project(fresh_project, empty_db):
    """Same, with the default store's file already initialised."""
    shutil.copy(empty_db, fresh_project / "mlflow.db")
    return fresh_project


class FakeDataset:
    """Just the PreparedDataset attributes run setup reads (name, digests, manifest, folders)."""

    def __init__(self, root: Path, dvc_md5: str | None = None):
        self.name = "synth"
        self.root = root
        self.path = root
        self.manifest = pd.DataFrame({"image": [f"{i}.png" for i in range(6)],
                                      "label": ["a", "b", "c"] * 2, "fold": [0, 1, 2] * 2})
        self.digest = "f" * 64
        self.dvc_md5 = dvc_md5


def test_default_store_is_one_sqlite_file_with_project_artifacts(fresh_project):
    project = fresh_project
    uri = store.configure()
    assert uri == f"sqlite:///{(project / 'mlflow.db').as_posix()}"
    assert mlflow.get_tracking_uri() == uri and mlflow.get_registry_uri() == uri
    assert (project / "mlflow.db").is_file()
    # even MLflow's own Default experiment points into <project>/mlartifacts, not <cwd>/mlruns
    default = MlflowClient().get_experiment("0")
    assert default.artifact_location.startswith((project / "mlartifacts").as_uri())
    cmd = store.ui_command(port=5123)
    assert cmd[:4] == ["mlflow", "ui", "--backend-store-uri", uri]
    assert cmd[cmd.index("--default-artifact-root") + 1] == (project / "mlartifacts").as_posix()


def test_env_tracking_uri_is_used_untouched(fresh_project, monkeypatch, tmp_path_factory):
    project = fresh_project
    other = tmp_path_factory.mktemp("elsewhere") / "x.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{other}")
    assert store.configure() == f"sqlite:///{other}"
    assert not (project / "mlflow.db").exists()
    # a remote server keeps its own artifact store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert store.experiment_artifact_location("zoo-tml") is None


def test_start_run_sets_experiment_tags_params_metrics_and_dataset(project, monkeypatch):
    monkeypatch.chdir(project.parent)  # artifacts must not follow the working directory
    ds = FakeDataset(project, dvc_md5="0123456789abcdef0123456789abcdef")
    with runs.start_run("tml", dataset=ds, fold=0, params={"epochs": 3, "lr": 1e-3, "aug": {"flip": True}},
                        config={"family": "tml", "epochs": 3}, name_parts=["resnet18"]) as run:
        for epoch in range(3):
            run.log_metrics({"train_loss": 1.0 / (epoch + 1), "val": {"macro_f1": 0.1 * epoch}}, step=epoch)
        run.log_metrics_json({"macro_f1": 0.5, "confusion_matrix": [[1, 0], [0, 1]]})
        import matplotlib.figure

        fig = matplotlib.figure.Figure()
        fig.add_subplot().plot([0, 1])
        run.log_figure(fig, "plots/curve.png")
    client = MlflowClient()
    r = client.get_run(run.run_id)
    exp = client.get_experiment(r.info.experiment_id)
    assert exp.name == "zoo-tml"
    assert exp.artifact_location == (project / "mlartifacts" / "zoo-tml").as_uri()
    assert r.info.run_name == "tml-resnet18-synth-f0"
    assert r.info.status == "FINISHED"
    t = r.data.tags
    assert (t["family"], t["dataset"], t["fold"]) == ("tml", "synth", "0")
    assert t["dataset_digest"] == ds.dvc_md5 and t["manifest_digest"] == ds.digest
    assert t["git_commit"] == "unknown"  # tmp project is not a git checkout
    assert r.data.params == {"epochs": "3", "lr": "0.001", "aug.flip": "True"}
    history = client.get_metric_history(run.run_id, "val.macro_f1")
    assert [m.step for m in history] == [0, 1, 2]
    assert math.isclose(history[-1].value, 0.2)
    arts = {a.path for a in client.list_artifacts(run.run_id)} | {
        a.path for a in client.list_artifacts(run.run_id, "plots")}
    assert {"config.json", "config.yaml", "metrics.json", "plots/curve.png"} <= arts
    assert (project / "mlartifacts" / "zoo-tml").is_dir()
    (inp,) = r.inputs.dataset_inputs
    assert inp.dataset.name == "synth" and inp.dataset.digest == ds.dvc_md5
    assert {tg.key: tg.value for tg in inp.tags}["mlflow.data.context"] == "training"


def test_attaches_to_mlflow_run_and_never_relogs_params(project, monkeypatch):
    """`mlflow run` creates the run, logs the entry-point params as strings and passes MLFLOW_RUN_ID."""
    store.configure()
    client = MlflowClient()
    exp_id = store.get_or_create_experiment("zoo-tml")
    created = client.create_run(exp_id)
    client.log_param(created.info.run_id, "fold", "0")
    client.log_param(created.info.run_id, "epochs", "auto")
    monkeypatch.setenv("MLFLOW_RUN_ID", created.info.run_id)
    with runs.start_run("tml", fold=0, params={"fold": 0, "epochs": 30, "lr": 0.01}, name_parts=["resnet18"]) as run:
        assert run.run_id == created.info.run_id
        logged = run.log_params({"fold": 0, "seed": 1})
    assert logged == {"seed": "1"}
    r = client.get_run(created.info.run_id)
    assert r.data.params == {"fold": "0", "epochs": "auto", "lr": "0.01", "seed": "1"}
    assert r.info.run_name == "tml-resnet18-f0"


def test_resume_continues_the_same_run(project):
    with runs.start_run("tml", fold=1, params={"epochs": 5}) as run:
        run.log_metrics({"loss": 1.0}, step=0)
    with runs.start_run("tml", fold=1, params={"epochs": 5}, run_id=run.run_id) as again:
        again.log_metrics({"loss": 0.5}, step=1)
    assert again.run_id == run.run_id
    steps = [m.step for m in MlflowClient().get_metric_history(run.run_id, "loss")]
    assert steps == [0, 1]


def test_cv_children_are_nested_and_parent_gets_mean_std(project):
    fold_metrics = [{"test_macro_f1": v, "test_mcs": 1 - v, "per_class": {"a": {"f1": v}}} for v in (0.6, 0.7, 0.8)]
    with runs.start_run("tml", fold="all", name_parts=["resnet18"]) as parent:
        child_ids = []
        for k, m in enumerate(fold_metrics):
            with runs.start_run("tml", fold=k, nested=True, name_parts=["resnet18"]) as child:
                child.log_metrics(m)
                child_ids.append(child.run_id)
        summary = runs.log_cv_summary(parent, fold_metrics)
    client = MlflowClient()
    p = client.get_run(parent.run_id)
    assert p.info.run_name == "tml-resnet18-cv" and p.data.tags["fold"] == "all"
    for k, cid in enumerate(child_ids):
        c = client.get_run(cid)
        assert c.data.tags["mlflow.parentRunId"] == parent.run_id
        assert c.info.experiment_id == p.info.experiment_id and c.data.tags["fold"] == str(k)
    assert math.isclose(p.data.metrics["test_macro_f1_mean"], 0.7)
    assert math.isclose(p.data.metrics["test_macro_f1_std"], float(np.std([0.6, 0.7, 0.8], ddof=1)))
    assert math.isclose(p.data.metrics["test_mcs_mean"], 0.3)
    assert "per_class.a.f1_mean" in p.data.metrics
    assert summary["test_macro_f1"]["values"] == [0.6, 0.7, 0.8]
    with pytest.raises(ValueError, match="at least one fold"):
        runs.log_cv_summary(parent, [])


def test_nested_needs_a_parent(project):
    with pytest.raises(ValueError, match="active parent run"):
        with runs.start_run("tml", fold=0, nested=True):
            pass


def test_failed_run_is_marked_failed(project):
    with pytest.raises(RuntimeError):
        with runs.start_run("tml", fold=0) as run:
            raise RuntimeError("boom")
    assert MlflowClient().get_run(run.run_id).info.status == "FAILED"


def test_run_names_read_well():
    assert runs.run_name("tml", "resnet18", dataset="synth", fold=0) == "tml-resnet18-synth-f0"
    assert runs.run_name("guided", "fr_sim_mat", "inverse_umap", dataset="synth", fold=2) == \
        "guided-fr_sim_mat-inverse_umap-synth-f2"
    assert runs.run_name("tml", "resnet18", dataset="pbc", fold="all") == "tml-resnet18-pbc-cv"


def test_cli_ui_prints_the_store_command(project, capsys):
    import argparse

    from zoo.tracking.cli import add_commands

    parser = argparse.ArgumentParser(prog="zoo")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ui", "--print", "--port", "5077"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert f"sqlite:///{(project / 'mlflow.db').as_posix()}" in out
    assert "--default-artifact-root" in out and "--port 5077" in out


def test_class_maps_both_directions(tmp_path):
    from zoo.tracking.evaluation import ClassMap, _apply_map

    model = ["band_neutrophil", "segmented_neutrophil", "lymphocyte"]
    # dataset -> model (default form): truth translated, null drops, unknown classes refused
    cmap = ClassMap.load({"neutrophil": "segmented_neutrophil", "platelet": None})
    y_true = np.array(["neutrophil", "lymphocyte", "platelet"], dtype=object)
    y_pred = np.array(["band_neutrophil", "lymphocyte", "lymphocyte"], dtype=object)
    keep, t, p, classes = _apply_map(y_true, y_pred, model, ["lymphocyte", "neutrophil", "platelet"], cmap)
    assert keep.tolist() == [True, True, False] and t[keep].tolist() == ["segmented_neutrophil", "lymphocyte"]
    assert classes == model
    with pytest.raises(ValueError, match=r"\['platelet'\] are not classes of the model"):
        _apply_map(y_true, y_pred, model, ["lymphocyte", "neutrophil", "platelet"],
                   ClassMap.load({"neutrophil": "segmented_neutrophil"}))
    # model -> dataset: predictions translated into the dataset's coarser classes
    path = tmp_path / "coarse.yaml"
    path.write_text("direction: model_to_dataset\nmap:\n  band_neutrophil: neutrophil\n"
                    "  segmented_neutrophil: neutrophil\n")
    coarse = ClassMap.load(path)
    assert coarse.direction == "model_to_dataset" and coarse.source == str(path)
    keep, t, p, classes = _apply_map(np.array(["neutrophil", "lymphocyte"], dtype=object),
                                     np.array(["band_neutrophil", "lymphocyte"], dtype=object),
                                     model, ["lymphocyte", "neutrophil"], coarse)
    assert keep.all() and p.tolist() == ["neutrophil", "lymphocyte"] and sorted(classes) == ["lymphocyte", "neutrophil"]
    with pytest.raises(ValueError, match="direction must be one of"):
        ClassMap.load({"direction": "sideways", "map": {}})
    with pytest.raises(ValueError, match="only allowed in the dataset -> model form"):
        ClassMap.load({"direction": "model_to_dataset", "map": {"lymphocyte": None}})
    with pytest.raises(FileNotFoundError):
        ClassMap.load(tmp_path / "missing.yaml")
    assert ClassMap.load("none") is None


def test_configure_follows_a_changed_tracking_uri_for_the_registry(tmp_path, monkeypatch):
    """MLflow writes the registry URI it is given into $MLFLOW_REGISTRY_URI (and child processes
    inherit it); the next configure() with another tracking URI must move the registry too instead
    of reading that value back. Only $ZOO_REGISTRY_URI chooses another registry."""
    import mlflow

    from zoo.tracking import store

    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.delenv("ZOO_REGISTRY_URI", raising=False)
    first, second = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", first)
    store.configure()
    assert mlflow.get_registry_uri() == first
    monkeypatch.setenv("MLFLOW_TRACKING_URI", second)
    store.configure()
    assert mlflow.get_registry_uri() == second
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", first)  # a stale value, as a child process inherits it
    store.configure()
    assert mlflow.get_registry_uri() == second
    monkeypatch.setenv("ZOO_REGISTRY_URI", f"sqlite:///{tmp_path / 'user.db'}")  # the user's own choice wins
    store.configure()
    assert mlflow.get_registry_uri() == f"sqlite:///{tmp_path / 'user.db'}"


def test_dataset_input_retries_a_lost_creation_race_and_raises_other_errors(project, monkeypatch):
    """Two Optuna workers logging the same dataset to one experiment race in MLflow's SQL store
    (check, then insert); the loser's server error is a unique violation, and its retry must find
    the winner's row. Any other error is not retried."""
    from mlflow.exceptions import MlflowException

    ds = FakeDataset(project, dvc_md5="0123456789abcdef0123456789abcdef")
    with runs.start_run("tml", dataset=ds, fold=0, params={}, config={"family": "tml"}, name_parts=["a"]):
        pass  # the winner: the dataset row exists now
    real = MlflowClient.log_inputs
    calls = []

    def lose_once(self, run_id, datasets=None, models=None):
        calls.append(run_id)
        if len(calls) == 1:
            raise MlflowException("RestException: BAD_REQUEST: (psycopg2.errors.UniqueViolation) duplicate key value "
                                  "violates unique constraint \"dataset_pk\"")
        return real(self, run_id, datasets, models)

    monkeypatch.setattr(MlflowClient, "log_inputs", lose_once)
    with runs.start_run("tml", dataset=ds, fold=1, params={}, config={"family": "tml"}, name_parts=["b"]) as run:
        pass
    assert len(calls) == 2 and calls[0] == calls[1] == run.run_id
    (inp,) = MlflowClient().get_run(run.run_id).inputs.dataset_inputs
    assert inp.dataset.digest == ds.dvc_md5

    def broken(self, run_id, datasets=None, models=None):
        raise MlflowException("RESOURCE_DOES_NOT_EXIST: run not found")

    monkeypatch.setattr(MlflowClient, "log_inputs", broken)
    with pytest.raises(MlflowException, match="run not found"):
        with runs.start_run("tml", dataset=ds, fold=2, params={}, config={"family": "tml"}, name_parts=["c"]):
            pass
