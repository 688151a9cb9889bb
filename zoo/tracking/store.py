"""The one default MLflow store of the project.

Without ``MLFLOW_TRACKING_URI`` everything — ``mlflow run``, the ``zoo`` CLI, the tests and
``mlflow ui`` — uses a SQLite file and an artifact folder in the project directory::

    <project>/mlflow.db        tracking + model registry (sqlite:///<absolute path>)
    <project>/mlartifacts/     run artifacts and logged models, one folder per experiment

Open the UI on it from the project directory with::

    mlflow ui --backend-store-uri sqlite:///mlflow.db --default-artifact-root ./mlartifacts

(or ``zoo ui``, which prints and runs exactly that with absolute paths). With
``MLFLOW_TRACKING_URI`` set (e.g. ``http://tracking:5000`` backed by PostgreSQL and an object
store), the same code uses it untouched, and the server decides where artifacts go.

Why the artifact location is always passed explicitly: MLflow resolves its default artifact root
(``./mlruns``) against the working directory *of the moment*, so runs started from another folder
(``mlflow run`` changes directory, pytest runs from anywhere) would scatter artifacts.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from zoo.paths import project_dir

DB_FILE = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"
# Stores that decide the artifact location themselves (a tracking server proxies artifacts).
_REMOTE_SCHEMES = ("http", "https", "databricks", "databricks-uc", "uc")


def in_project() -> bool:
    """True when the project directory was chosen on purpose: ``$ZOO_HOME`` is set, or an
    ``MLproject`` lies in the working directory or one of its parents."""
    return bool(os.environ.get("ZOO_HOME")) or (project_dir() / "MLproject").is_file()


def default_tracking_uri() -> str:
    """``sqlite:///<project>/mlflow.db`` (absolute, so the working directory never matters)."""
    return f"sqlite:///{(project_dir() / DB_FILE).as_posix()}"


def artifact_root() -> Path:
    return project_dir() / ARTIFACT_DIR


def tracking_uri() -> str:
    """The URI the zoo talks to: ``$MLFLOW_TRACKING_URI`` untouched, else the project's SQLite."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def is_remote(uri: str | None = None) -> bool:
    return urlparse(uri or tracking_uri()).scheme in _REMOTE_SCHEMES


def experiment_artifact_location(name: str) -> str | None:
    """Where a new experiment keeps its artifacts: ``<project>/mlartifacts/<name>`` as a file URI,
    or ``None`` for a tracking server (it knows its own artifact store)."""
    if is_remote():
        return None
    return (artifact_root() / name).as_uri()


def _initialise_sqlite(uri: str) -> None:
    """Create a missing SQLite store with the project's artifact root, so even MLflow's own
    ``Default`` experiment (and experiments ``mlflow run --experiment-name`` creates) lands in
    ``mlartifacts/`` instead of ``<cwd>/mlruns``."""
    path = Path(uri[len("sqlite:///"):])
    if path.exists():
        return
    if not in_project():
        # Outside a checkout the "project" is just the working directory: creating mlflow.db and
        # mlartifacts/ there silently gave an empty, stray store ("no registered zoo models yet").
        raise ValueError(
            f"no zoo project here ({Path.cwd()}: no MLproject in it or its parents, ZOO_HOME and "
            f"MLFLOW_TRACKING_URI unset); the zoo would create a new store {path} + "
            f"{artifact_root()}/. Run from the marrow-zoo checkout, or set ZOO_HOME=<project dir> "
            "(created there if missing) or MLFLOW_TRACKING_URI=<store>")
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path.parent.mkdir(parents=True, exist_ok=True)
    root = artifact_root()
    root.mkdir(parents=True, exist_ok=True)
    SqlAlchemyStore(uri, root.as_uri())


def configure() -> str:
    """Point MLflow's tracking *and* registry at the zoo's store; return the tracking URI.

    Idempotent and cheap; every zoo entry point (run setup, registry, evaluation, CLI) calls it.
    The registry is the tracking store unless ``$ZOO_REGISTRY_URI`` names another one.
    ``$MLFLOW_REGISTRY_URI`` is deliberately not read: ``mlflow.set_registry_uri`` writes it into the
    environment itself, so a child process (``mlflow run``'s entry point, a test's subprocess, a
    tuning worker) inherits the parent's value even when it was started with another
    ``$MLFLOW_TRACKING_URI`` — it would register into one store and look models up in another.
    """
    import mlflow

    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not os.environ.get("MLFLOW_TRACKING_URI"):
        _initialise_sqlite(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(os.environ.get("ZOO_REGISTRY_URI") or uri)
    return uri


# MLflow 3's UI opens an experiment without this tag in its GenAI view (traces, prompts); the zoo's
# experiments are machine-learning ones, where runs, metrics and models come first.
EXPERIMENT_KIND_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def get_or_create_experiment(name: str) -> str:
    """Experiment id of ``name``, creating it with an explicit artifact location if missing.
    A deleted experiment of that name is restored rather than shadowed. Tagged as a
    machine-learning experiment (:data:`EXPERIMENT_KIND_TAGS`), also when it already existed."""
    from mlflow.tracking import MlflowClient

    configure()
    client = MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        for key, value in EXPERIMENT_KIND_TAGS.items():
            if exp.tags.get(key) != value:
                client.set_experiment_tag(exp.experiment_id, key, value)
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=experiment_artifact_location(name),
                                        tags=EXPERIMENT_KIND_TAGS)
    except Exception:
        # Two processes (CV children, Optuna workers) may race to create it; the loser reads it.
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def ensure_experiments(names) -> dict[str, str]:
    """Create the named experiments ahead of ``mlflow run --experiment-name`` (which would create
    them with MLflow's cwd-relative default artifact root). Returns name -> id."""
    return {n: get_or_create_experiment(n) for n in names}


def ui_command(port: int = 5000, host: str = "127.0.0.1") -> list[str]:
    """The ``mlflow ui`` command line for the configured store."""
    uri = tracking_uri()
    cmd = ["mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    if not is_remote(uri):
        cmd += ["--default-artifact-root", artifact_root().as_posix()]
    return cmd
