"""Run setup shared by every family: one experiment per family, the tags of ARCHITECTURE.md,
params logged once, metrics per epoch, the dataset as an MLflow input, and artifacts.

```python
from zoo.tracking.runs import start_run, log_cv_summary
with start_run("tml", dataset=ds, fold=0, params=cfg.to_dict(), config=cfg.to_dict(),
               name_parts=["resnet18"]) as run:          # run name "tml-resnet18-synth-f0"
    run.log_metrics({"train_loss": 0.3, "val_macro_f1": 0.8}, step=epoch)
    run.log_figure(fig, "plots/confusion_matrix.png")
    run.log_metrics_json(test_metrics)
```

``mlflow run`` creates the run itself and hands its id to the entry point in ``MLFLOW_RUN_ID``;
:func:`start_run` then attaches to that run (``mlflow.start_run`` does when the variable is set),
renames it, and logs only the params the run does not have yet — MLflow refuses to overwrite a
param, and ``mlflow run`` has already logged the entry-point parameters in their string form.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from zoo.paths import prepared_dir, project_dir
from zoo.tracking import store

log = logging.getLogger(__name__)

# MLflow stores a dataset-input digest in a 36-character column; tags keep the full digest.
_INPUT_DIGEST_LEN = 32
# What a lost insert race looks like in the store's error (PostgreSQL, MySQL, SQLite).
_UNIQUE_RACE = ("uniqueviolation", "unique constraint", "duplicate key", "duplicate entry")
_MAX_PARAM_LEN = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH


def experiment_name(family: str) -> str:
    return f"zoo-{family}"


def git_commit(path: str | Path | None = None) -> str:
    """HEAD of the git checkout holding ``path`` (default: the project), else ``"unknown"``."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=str(path or project_dir()),
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else "unknown"


def dataset_digest(dataset) -> str:
    """DVC md5 when the data is DVC-tracked, else the manifest digest (ARCHITECTURE.md)."""
    return getattr(dataset, "dvc_md5", None) or dataset.digest


def dataset_tags(dataset) -> dict[str, str]:
    return {
        "dataset": str(dataset.name),
        "dataset_digest": str(dataset_digest(dataset)),
        "manifest_digest": str(dataset.digest),
    }


def fold_label(fold: int | str | None) -> str:
    if fold is None:
        return "none"
    return str(fold)


def run_name(family: str, *parts: Any, dataset: str | None = None, fold: int | str | None = None) -> str:
    """Names that read well in a list: ``tml-resnet18-synth-f0``,
    ``guided-fr_sim_mat-inverse_umap-synth-f2``, ``tml-resnet18-synth-cv`` (all folds)."""
    bits = [family, *(str(p) for p in parts if p not in (None, ""))]
    if dataset:
        bits.append(str(dataset))
    if fold is not None:
        bits.append("cv" if str(fold) == "all" else f"f{fold}" if str(fold).isdigit() else str(fold))
    return "-".join(bits)


def flatten(mapping: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Nested dicts -> dotted keys (``per_class.band_neutrophil.f1``)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name, sep))
        else:
            out[name] = value
    return out


def numeric_items(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The scalar numbers of a (nested) metrics dict, flattened; lists, strings, arrays and
    matrices are left to the metrics JSON artifact."""
    out = {}
    for key, value in flatten(metrics).items():
        if isinstance(value, (bool, np.bool_)):
            value = float(value)
        if isinstance(value, (int, float, np.integer, np.floating)) or (
            isinstance(value, np.ndarray) and value.ndim == 0
        ):
            out[f"{prefix}{key}"] = float(value)
    return out


def _param_str(value: Any) -> str:
    if isinstance(value, (list, tuple, dict)):
        text = json.dumps(value, default=str, sort_keys=isinstance(value, dict))
    else:
        text = str(value)
    return text if len(text) <= _MAX_PARAM_LEN else text[: _MAX_PARAM_LEN - 3] + "..."


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        v = float(obj)
        return None if not math.isfinite(v) else v
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


class TrackedRun:
    """One MLflow run, addressed by id through the client (so a CV parent can still be written
    to while a child run is active)."""

    tracked = True  # False for a DDP rank's shadow (RankShadowRun): nothing is written

    def __init__(self, run_id: str):
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient()
        self.run_id = run_id
        self.experiment_id = self.client.get_run(run_id).info.experiment_id

    @property
    def run(self):
        return self.client.get_run(self.run_id)

    def __repr__(self) -> str:
        return f"TrackedRun({self.run_id!r})"

    # -- params and tags -------------------------------------------------------------------
    def log_params(self, params: Mapping[str, Any]) -> dict[str, str]:
        """Log the params the run does not have yet (flattened with dots); return what was
        logged. A param already present with a different value is kept and reported, since
        MLflow cannot change it (e.g. ``mlflow run`` logged ``fold`` as ``"0"``)."""
        from mlflow.entities import Param

        existing = self.run.data.params
        todo: dict[str, str] = {}
        for key, value in flatten(params).items():
            text = _param_str(value)
            if key in existing:
                if existing[key] != text:
                    log.info("param %s already logged as %r; not re-logging %r", key, existing[key], text)
                continue
            todo[key] = text
        items = list(todo.items())
        for i in range(0, len(items), 100):  # MLflow's log_batch takes at most 100 params
            self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in items[i : i + 100]])
        return todo

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        clean = [RunTag(str(k), str(v)) for k, v in tags.items() if v is not None]
        if clean:
            self.client.log_batch(self.run_id, tags=clean)

    # -- metrics ---------------------------------------------------------------------------
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None, prefix: str = "") -> dict[str, float]:
        """Log every scalar of ``metrics`` (nested dicts flattened) at ``step``."""

        from mlflow.entities import Metric

        values = numeric_items(metrics, prefix)
        ts = int(time.time() * 1000)
        batch = [Metric(k, v, ts, int(step or 0)) for k, v in values.items()]
        for i in range(0, len(batch), 1000):
            self.client.log_batch(self.run_id, metrics=batch[i : i + 1000])
        return values

    # -- dataset ---------------------------------------------------------------------------
    def log_dataset(self, dataset, context: str = "training", frame=None) -> None:
        """Record ``dataset`` (a PreparedDataset) as an MLflow input with its DVC/manifest
        digest; ``frame`` (default: the whole manifest) is the part actually used."""
        import mlflow
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        folder = getattr(dataset, "path", None) or prepared_dir(dataset.name)
        manifest_file = Path(folder) / "manifest.parquet"
        source = str(manifest_file if manifest_file.is_file() else dataset.root)
        df = dataset.manifest if frame is None else frame
        with warnings.catch_warnings():
            # "source can be interpreted in multiple ways" (a local path is a local path) and the
            # integer-column hint are about model signatures, not dataset records.
            warnings.filterwarnings("ignore", message=".*(interpreted in multiple ways|integer column).*")
            ds = mlflow.data.from_pandas(
                df, source=source, name=str(dataset.name),
                digest=str(dataset_digest(dataset))[:_INPUT_DIGEST_LEN],
                targets="label" if "label" in df.columns else None,
            )
            tag = InputTag(key=MLFLOW_DATASET_CONTEXT, value=context)
            # The client call, not mlflow.log_input: the same for the active run and any other
            # (a CV parent). MLflow's SQL store checks for the dataset row, then inserts it: two
            # processes logging the same dataset to one experiment at once (Optuna workers on two
            # hosts) race, and the loser gets a unique-constraint error. Its retry finds the row.
            for attempt in range(3):
                try:
                    self.client.log_inputs(self.run_id, [DatasetInput(ds._to_mlflow_entity(), [tag])])
                    return
                except Exception as exc:  # MlflowException / RestException: the server's message
                    text = str(exc).lower()
                    if attempt == 2 or not any(k in text for k in _UNIQUE_RACE):
                        raise
                    log.info("dataset input of run %s lost a creation race; retrying", self.run_id)
                    time.sleep(0.2 * (attempt + 1))

    # -- artifacts -------------------------------------------------------------------------
    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        """JSON or YAML by extension (``config.yaml``, ``metrics.json``)."""
        self.client.log_dict(self.run_id, _jsonable(data), artifact_file)

    def log_config(self, config: Mapping[str, Any], name: str = "config") -> None:
        """The resolved configuration, as ``config.json`` and ``config.yaml``."""
        self.log_dict(config, f"{name}.json")
        self.log_dict(config, f"{name}.yaml")

    def log_metrics_json(self, metrics: Mapping[str, Any], artifact_file: str = "metrics.json") -> None:
        self.log_dict(metrics, artifact_file)

    def log_figure(self, figure, artifact_file: str, close: bool = True) -> None:
        self.client.log_figure(self.run_id, figure, artifact_file)
        if close:
            import matplotlib.pyplot as plt

            plt.close(figure)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, directory: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, str(directory), artifact_path)

    def artifact_uri(self, artifact_path: str = "") -> str:
        base = self.run.info.artifact_uri
        return f"{base}/{artifact_path}" if artifact_path else base


@contextmanager
def start_run(
    family: str,
    *,
    dataset=None,
    fold: int | str | None = None,
    params: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    run_name: str | None = None,
    name_parts: Iterable[Any] = (),
    tags: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    nested: bool = False,
    log_dataset: bool = True,
    description: str | None = None,
) -> Iterator[TrackedRun]:
    """Start (or attach to) the run of one training job and set it up.

    * experiment ``zoo-<family>`` (created with the project's artifact location), unless the run
      already exists: ``run_id`` (resume after a crash) or ``$MLFLOW_RUN_ID`` (``mlflow run``);
    * ``nested=True`` makes a child of the active run, in the parent's experiment (CV folds);
    * tags ``family``, ``dataset``, ``dataset_digest``, ``manifest_digest``, ``git_commit``,
      ``fold``; params logged once; ``config`` logged as config.json/config.yaml; the dataset as a
      ``training`` input.

    The run ends FINISHED on success and FAILED on an exception (KILLED on Ctrl-C).
    """
    import mlflow

    store.configure()
    name = run_name or _default_run_name(family, name_parts, dataset, fold)
    kwargs: dict[str, Any] = {"run_name": name, "description": description}
    if nested:
        parent = mlflow.active_run()
        if parent is None:
            raise ValueError("nested=True needs an active parent run: start the parent first "
                             "(start_run(family, fold='all') as the outer context)")
        kwargs.update(nested=True, experiment_id=parent.info.experiment_id)
    elif run_id:
        kwargs["run_id"] = run_id
    elif not _env_run_id():
        kwargs["experiment_id"] = store.get_or_create_experiment(experiment_name(family))

    all_tags = {"family": family, "fold": fold_label(fold), "git_commit": git_commit()}
    if dataset is not None:
        all_tags.update(dataset_tags(dataset))
    all_tags.update(tags or {})

    with mlflow.start_run(**kwargs) as active:
        run = TrackedRun(active.info.run_id)
        run.set_tags(all_tags)
        if params:
            run.log_params(params)
        if config:
            run.log_config(config)
        if dataset is not None and log_dataset:
            run.log_dataset(dataset, context="training")
        yield run


@contextmanager
def rank_run(family: str, **kwargs: Any) -> Iterator[TrackedRun]:
    """:func:`start_run` on rank 0 of a torchrun job (and in any single process); on the other
    ranks a :class:`RankShadowRun` with rank 0's run id, so only one MLflow run exists per job.
    Every rank must enter it at the same point (rank 0 broadcasts the id)."""
    from zoo.train import distributed

    ctx = distributed.context()
    if not ctx.enabled:
        with start_run(family, **kwargs) as run:
            yield run
        return
    if ctx.is_main:
        with start_run(family, **kwargs) as run:
            distributed.broadcast(run.run_id, ctx)
            yield run
        return
    yield RankShadowRun(distributed.broadcast(None, ctx))


class RankShadowRun(TrackedRun):
    """A non-zero rank's stand-in for rank 0's run: the same methods, and none of them writes (only
    rank 0 talks to MLflow, so a DDP job has one run, one set of metrics, one model)."""

    tracked = False

    def __init__(self, run_id: str):  # no client: this rank never reads or writes the run
        self.run_id = run_id
        self.experiment_id = None

    @property
    def run(self):
        raise RuntimeError("only rank 0 reads the MLflow run of a DDP job")

    def log_params(self, params: Mapping[str, Any]) -> dict[str, str]:
        return {}

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None, prefix: str = "") -> dict[str, float]:
        return numeric_items(metrics, prefix)

    def log_dataset(self, dataset, context: str = "training", frame=None) -> None:
        pass

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        pass

    def log_figure(self, figure, artifact_file: str, close: bool = True) -> None:
        if close:
            import matplotlib.pyplot as plt

            plt.close(figure)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def log_artifacts(self, directory: str | Path, artifact_path: str | None = None) -> None:
        pass

    def artifact_uri(self, artifact_path: str = "") -> str:
        raise RuntimeError("only rank 0 has the artifact store of a DDP job")


def _env_run_id() -> str | None:
    import os

    return os.environ.get("MLFLOW_RUN_ID") or None


def _default_run_name(family, parts, dataset, fold) -> str:
    return run_name(family, *parts, dataset=getattr(dataset, "name", None), fold=fold)


def log_cv_summary(parent: TrackedRun | str, child_metrics: list[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Log mean and std over folds of every scalar metric the children report, on the parent run,
    as ``<metric>_mean`` / ``<metric>_std`` and in ``cv_summary.json`` (with per-fold values).

    ``std`` is the sample standard deviation (ddof=1, the usual "mean ± std over folds"); 0.0 with a
    single fold. A metric missing from some folds is summarised over the folds that have it.
    """
    if not child_metrics:
        raise ValueError("log_cv_summary needs the metrics of at least one fold, got none")
    run = parent if isinstance(parent, TrackedRun) else TrackedRun(str(parent))
    per_fold = [numeric_items(m) for m in child_metrics]
    keys = sorted(set().union(*per_fold))
    summary: dict[str, dict[str, float]] = {}
    flat: dict[str, float] = {}
    for key in keys:
        vals = np.array([m[key] for m in per_fold if key in m and math.isfinite(m[key])], dtype=float)
        if len(vals) == 0:
            continue
        mean = float(vals.mean())
        std = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        summary[key] = {"mean": mean, "std": std, "n": int(len(vals)), "values": vals.tolist()}
        flat[f"{key}_mean"], flat[f"{key}_std"] = mean, std
    run.log_metrics(flat)
    run.log_dict({"n_folds": len(child_metrics), "metrics": summary}, "cv_summary.json")
    return summary
