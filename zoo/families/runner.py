"""One training job, for any family. The runner owns only what every family shares: the
configuration, the data and its folds, the MLflow runs (a run per fold; ``fold=all`` nests every
CV iteration under one parent that logs mean ± std), the test metrics' logging, the model's
packaging and its registration. Training one fold is the family's :meth:`Family.fit_fold`.

``fold=final`` trains on every labelled row (a small stratified validation slice is kept for early
stopping and SVM selection); with ``cv_run=<id of a fold=all run>`` it trains for the epoch count
that CV chose and is registered tagged with the CV's estimate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from zoo.families.base import Family, FoldContext, FoldOutcome
from zoo.families.embedding import m_per_class  # noqa: F401  (public here since the first version)
from zoo.families.params import FINAL, TrainConfig, resolve_config

log = logging.getLogger(__name__)

FINAL_VAL_FRACTION = 0.1  # fold=final: share of each class kept for early stopping / SVM selection


@dataclass
class FoldResult:
    fold: int | str
    run_id: str
    metrics: dict[str, float]          # test_* and best val_* scalars
    best_epoch: int | None
    epochs_run: int
    model_uri: str | None = None
    model_version: str | None = None
    seconds: float = 0.0
    test_rows: list[str] = field(default_factory=list)
    gate: dict[str, str] = field(default_factory=dict)   # fold/limit/n_test/test_rows_digest tags


@dataclass
class TrainingResult:
    family: str
    config: TrainConfig
    folds: list[FoldResult]
    run_id: str                         # the run (single fold) or the CV parent
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    registered: str | None = None       # "zoo-<family>/<version>"
    primary_metric: str = "macro_f1"

    def metric(self, name: str) -> float:
        """Test metric of a single-fold job, or its CV mean."""
        if self.summary:
            return float(self.summary[name]["mean"])
        return float(self.folds[0].metrics[name])

    def describe(self) -> str:
        key = f"test_{self.primary_metric}"
        lines = [f"{self.family}: run {self.run_id} on dataset {self.config.dataset!r}"]
        for r in self.folds:
            extra = f"  MCS {r.metrics['test_mcs']:.4f}" if "test_mcs" in r.metrics else ""
            lines.append(f"  fold {r.fold}: {key} {r.metrics.get(key, float('nan')):.4f}{extra}  best epoch "
                         f"{r.best_epoch}/{r.epochs_run}  ({r.seconds:.0f} s)")
        for k in (key, "test_mcs", f"{key}_tolerant"):
            if k in self.summary:
                s = self.summary[k]
                lines.append(f"  {k}: {s['mean']:.4f} ± {s['std']:.4f} over {s['n']} folds")
        if self.registered:
            lines.append(f"  registered {self.registered} with alias @candidate "
                         f"(promote: zoo models promote {self.registered.replace('/', ' ')} production)")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# entry
# --------------------------------------------------------------------------------------------
def build_family(family: str, raw: Mapping[str, Any]) -> Family:
    """Resolve the parameters and instantiate the family (all validation, no run yet)."""
    from zoo.families import FAMILIES

    fam_cls = FAMILIES.get(family)
    cfg = resolve_config(family, raw, fam_cls.param_names())
    return fam_cls(cfg)


def run_training(family: str | Family, raw: Mapping[str, Any] | None = None, *, progress: bool = True,
                 callbacks: Iterable = (), log_model: bool = True) -> TrainingResult:
    """Train ``family`` (a name with entry-point parameters ``raw``, or a built :class:`Family`).
    ``callbacks``: extra Trainer callbacks (tuning pruner, time budget) handed to every fold
    through :attr:`FoldContext.callbacks`.

    Under torchrun (``nproc`` > 1) every rank runs this; only rank 0 has MLflow runs and registers
    (the other ranks' runs are :class:`zoo.tracking.runs.RankShadowRun`)."""
    from zoo.train import distributed

    fam = family if isinstance(family, Family) else build_family(family, raw or {})
    if fam.cfg.nproc > 1 and not distributed.from_env().enabled:
        raise ValueError(f"nproc={fam.cfg.nproc}: multi-process training is launched by `zoo train` / `mlflow run` "
                         "(or run this under `torchrun --nproc-per-node=N`); here use nproc=1")
    with distributed.session() as dctx:
        if dctx.enabled and distributed.restart_count() and not fam.cfg.resume:
            # torchrun restarted the workers after a failure: continue from the last checkpoint
            log.warning("torchrun restart %d: resuming from the last checkpoint", distributed.restart_count())
            fam.cfg.resume = True
        return _run_training(fam, dctx, progress=progress, callbacks=callbacks, log_model=log_model)


def _run_training(fam: Family, dctx, *, progress: bool, callbacks: Iterable, log_model: bool) -> TrainingResult:
    from zoo.tracking import store
    from zoo.tracking.runs import log_cv_summary, rank_run

    cfg = fam.cfg
    dataset = load_dataset(cfg.dataset)
    if isinstance(cfg.fold, int) and not 0 <= cfg.fold < dataset.n_folds:
        raise ValueError(f"fold {cfg.fold} does not exist: dataset {dataset.name!r} has "
                         f"{dataset.n_folds} folds (use 0..{dataset.n_folds - 1}, 'all' or 'final')")
    store.configure()
    init_from = None
    if isinstance(cfg.pretrained, str) and cfg.pretrained.startswith(("models:/", "runs:/")):
        # Start from a registered autoencoder's encoder (its plain-timm backbone file), resolved and
        # downloaded once, before any run exists: a wrong URI fails here.
        from zoo.autoencoder.reuse import resolve_pretrained

        init_from, cfg.pretrained = cfg.pretrained, resolve_pretrained(cfg.pretrained)
        fam.init_from = init_from  # what runs record as `pretrained` (not the downloaded file's path)
    cv = _cv_choice(fam, cfg.cv_run) if cfg.fold == FINAL and cfg.cv_run else None
    if cfg.fold == FINAL and cfg.register and cv is None:
        raise ValueError("fold=final registers the model with the estimate of a cross-validation: pass "
                         "cv_run=<run id of a fold=all run of this configuration> (or register=false)")
    if cv is not None:
        cfg.epochs = cv["epochs"]
        cfg.patience = cv["epochs"]  # train the epochs the CV chose; the val slice only picks the SVM
    if dctx.is_main:
        _warn_foreign_experiment(cfg.family)
    params = {**cfg.to_dict(), **fam.params}
    if init_from:
        params["pretrained"] = init_from  # the URI, not the downloaded file's temporary path
    callbacks = tuple(callbacks)

    if cfg.fold == "all":
        with rank_run(cfg.family, dataset=dataset, fold="all", params=params, config=params,
                      name_parts=[*fam.name_parts(), "cv"], tags={**fam.tags(), **fam.gate_tags()}) as parent:
            results = [train_fold(fam, dataset, k, nested=True, progress=progress, callbacks=callbacks,
                                  log_model=log_model) for k in range(dataset.n_folds)]
            summary = log_cv_summary(parent, [r.metrics for r in results]) if dctx.is_main else {}
            parent.set_tags(_cv_tags(fam, results))
            best = _best(fam, results)
            registered = None
            if cfg.register and best.model_uri and dctx.is_main:
                registered = _register(fam, best, extra_tags={"cv_parent": parent.run_id})
                parent.set_tags({"registered_version": registered, "registered_fold": str(best.fold)})
            return TrainingResult(cfg.family, cfg, results, parent.run_id, summary, registered, fam.primary_metric)

    result = train_fold(fam, dataset, cfg.fold, nested=False, progress=progress, callbacks=callbacks,
                        log_model=log_model, cv=cv)
    registered = None
    if cfg.register and result.model_uri and dctx.is_main:
        registered = _register(fam, result, extra_tags={"cv_parent": cv["run_id"]} if cv else None)
    return TrainingResult(cfg.family, cfg, [result], result.run_id, {}, registered, fam.primary_metric)


def _best(fam: Family, results: list[FoldResult]) -> FoldResult:
    key = f"val_{fam.primary_metric}"
    sign = 1.0 if fam.direction == "maximize" else -1.0
    return max(results, key=lambda r: sign * r.metrics.get(key, -math.inf * sign))


def _warn_foreign_experiment(family: str) -> None:
    """Under ``mlflow run`` the run already exists; say so when it is not in the family's experiment."""
    import os

    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return
    from mlflow import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment(client.get_run(run_id).info.experiment_id)
    if exp.name != f"zoo-{family}":
        log.warning("this run is in experiment %r, not %r: pass --experiment-name zoo-%s to mlflow run "
                    "so runs of a family stay together", exp.name, f"zoo-{family}", family)


def load_dataset(name: str):
    """The prepared dataset ``name``; the synthetic default is built on first use (a fresh clone
    trains without any data), anything else must have been prepared."""
    from zoo.data.prepared import PreparedDataset, list_prepared
    from zoo.paths import prepared_dir

    if (prepared_dir(name) / "manifest.parquet").is_file() or Path(name).is_dir():
        return PreparedDataset.load(name)
    if name == "synth":
        from zoo.data.cli import generate_synth
        from zoo.data.ingest import ingest
        from zoo.paths import data_dir

        log.warning("dataset 'synth' is not prepared yet: generating the synthetic default now "
                    "(what `zoo data synth` and `dvc repro` do)")
        return ingest(generate_synth(data_dir() / "raw" / "synth"), "synth", reader="synth")
    available = list_prepared()
    raise FileNotFoundError(
        f"no prepared dataset {name!r} in {prepared_dir()}; prepared: {', '.join(available) or 'none'}. "
        f"Prepare it with `zoo data ingest <folder> --name {name} --reader <reader>` (see README: "
        "bringing your own dataset)")


def severity_for(classes: list[str]):
    """The MCS severity matrix for ``classes`` (see :func:`zoo.tracking.evaluation.severity_for`)."""
    from zoo.tracking.evaluation import severity_for as _severity_for

    return _severity_for(classes)


# --------------------------------------------------------------------------------------------
# splits, digests, loaders
# --------------------------------------------------------------------------------------------
def rows_digest(rows: pd.DataFrame) -> str:
    """Digest of exactly these rows (image id + label): two evaluations compare only when equal."""
    ids = sorted(f"{i}\t{l}" for i, l in zip(rows["image"].astype(str), rows["label"].astype(str)))
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def fold_split(dataset, fold: int | str, limit: int | None, seed: int) -> dict[str, pd.DataFrame]:
    """``{"train", "val", "test"}`` rows of ``fold`` after the stratified ``limit`` subsample (the
    rows make_loaders uses). ``final``: train = every labelled row but a stratified validation
    slice (:data:`FINAL_VAL_FRACTION` of each class, at least one when a class has 2+ rows), test
    empty."""
    from zoo.data.datasets import stratified_subsample

    manifest = stratified_subsample(dataset.manifest, limit, seed=seed)
    if fold != FINAL:
        keep = set(manifest["image"])
        return {k: v[v["image"].isin(keep)] for k, v in dataset.split(int(fold)).items()}
    labelled = manifest[manifest["label"].notna()]
    rng = np.random.default_rng(seed)
    val_idx = []
    for _, group in labelled.groupby("label", sort=True):
        n_val = 0 if len(group) < 2 else max(1, int(round(FINAL_VAL_FRACTION * len(group))))
        val_idx += list(rng.choice(group.index.to_numpy(), size=n_val, replace=False))
    val = labelled.loc[sorted(val_idx)]
    return {"train": labelled.drop(index=val.index), "val": val, "test": labelled.iloc[0:0]}


def _final_view(dataset, parts: dict[str, pd.DataFrame]):
    """``dataset`` whose ``split()`` returns ``parts`` (fold=final): make_loaders reads ``split``,
    and everything else (manifest, root, classes) stays the dataset's own."""
    from zoo.data.prepared import PreparedDataset

    class FinalSplit(PreparedDataset):
        def __init__(self):  # a view: no folder to read, the dataset's state is shared
            self.__dict__.update(dataset.__dict__)

        def split(self, fold):
            return {k: v for k, v in parts.items() if len(v)}

    return FinalSplit()


# Decoded loaders shared by consecutive trainings on the same fold (see ``reuse_loaders``).
_LOADER_CACHE: dict | None = None


@contextmanager
def reuse_loaders():
    """Within this context, trainings on the same dataset/fold/size reuse the decoded images
    instead of decoding them again (what the guide comparison and tuning do dozens of times)."""
    global _LOADER_CACHE
    previous, _LOADER_CACHE = _LOADER_CACHE, {}
    try:
        yield
    finally:
        _LOADER_CACHE = previous


def _loader_factory(cfg: TrainConfig, dataset, fold: int | str, split: dict[str, pd.DataFrame]):
    def make(*, sampler: str | None = None, m_per_class: int = 4, img_size: int | None = None,
             batch_size: int | None = None, augment: dict | None = None, return_mask: bool = False) -> dict:
        from zoo.data.datasets import make_loaders

        from zoo.train import distributed

        img = int(img_size or cfg.img_size)
        bs = int(batch_size or cfg.batch_size)
        shard = distributed.context().shard  # under DDP each rank trains on its share of the rows
        key = (str(dataset.path), dataset.digest, fold, img, bs, cfg.num_workers, cfg.limit, cfg.seed, sampler,
               m_per_class, json.dumps(augment, sort_keys=True, default=str), return_mask, shard)
        cached = _LOADER_CACHE.get(key) if _LOADER_CACHE is not None else None
        if cached is not None:
            return cached
        source, k = (_final_view(dataset, split), 0) if fold == FINAL else (dataset, int(fold))
        loaders = make_loaders(source, k, img, bs, num_workers=cfg.num_workers, limit=cfg.limit, seed=cfg.seed,
                               sampler=sampler, m_per_class=m_per_class, augment=augment, return_mask=return_mask,
                               shard=shard)
        if _LOADER_CACHE is not None:
            _LOADER_CACHE.clear()  # one fold at a time: bounded memory
            _LOADER_CACHE[key] = loaders
        return loaders

    return make


def _checkpoint_dir(cfg: TrainConfig, fam: Family, fold: int | str) -> Path:
    """Stable per configuration and fold, so ``resume=true`` finds the interrupted run's state."""
    from zoo.paths import project_dir

    keyed = {k: v for k, v in cfg.to_dict().items() if k not in ("resume", "register", "device", "num_workers",
                                                                      "nproc", "restarts")}
    keyed.update(fam.params, fold=fold)
    digest = hashlib.sha1(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return project_dir() / "checkpoints" / cfg.family / f"{cfg.dataset}-f{fold}-{digest}"


# --------------------------------------------------------------------------------------------
# one fold
# --------------------------------------------------------------------------------------------
def train_fold(fam: Family, dataset, fold: int | str, *, nested: bool, progress: bool, callbacks: Iterable = (),
               log_model: bool = True, embedding_map: str = "auto", checkpoints: bool = True,
               cv: Mapping[str, Any] | None = None) -> FoldResult:
    """Train one fold of ``fam`` in its own run (a child of the active run when ``nested``)."""
    import mlflow

    from zoo.tracking.runs import rank_run
    from zoo.train import distributed

    cfg = fam.cfg
    ckpt_dir = _checkpoint_dir(cfg, fam, fold) if checkpoints else None
    resume_run = None
    if cfg.resume and ckpt_dir is not None:
        from zoo.train.checkpoint import read_extra

        extra = read_extra(ckpt_dir)
        resume_run = (extra or {}).get("run_id")
        if resume_run is None:
            log.warning("resume=true but no checkpoint in %s: starting afresh", ckpt_dir)
        else:
            log.warning("resuming run %s from %s", resume_run, ckpt_dir)
            outer = mlflow.active_run()
            if outer is not None and not nested and distributed.context().is_main:
                # `mlflow run` made a new run for this invocation; the work continues in the old one.
                mlflow.set_tags({"resumed_into": resume_run})
                mlflow.end_run()
    params = {**cfg.to_dict(), **fam.params, "fold": fold}
    if getattr(fam, "init_from", None):
        params["pretrained"] = fam.init_from
    with rank_run(cfg.family, dataset=dataset, fold=fold, params=params, config=params, nested=nested,
                  name_parts=fam.name_parts(), tags={**fam.tags(), **fam.gate_tags()},
                  run_id=None if nested else resume_run) as run:
        return _fit_in_run(run, fam, dataset, fold, ckpt_dir, progress, tuple(callbacks), log_model, embedding_map,
                           cv)


def _fit_in_run(run, fam: Family, dataset, fold: int | str, ckpt_dir: Path | None, progress: bool, callbacks: tuple,
                log_model: bool, embedding_map: str, cv: Mapping[str, Any] | None) -> FoldResult:
    from zoo.knowledge import load_ontology
    from zoo.train import seed_everything

    cfg = fam.cfg
    start = time.perf_counter()
    seed_everything(cfg.seed)
    split = fold_split(dataset, fold, cfg.limit, cfg.seed)
    classes = list(dataset.classes)
    ontology = load_ontology()
    if any(c not in ontology.default_classes for c in classes):
        run.set_tags({"mcs_severity": "extended"})
    training = {"dataset": dataset.name, "dataset_digest": _dataset_digest(dataset),
                "manifest_digest": dataset.digest, "fold": fold, "limit": cfg.limit, "seed": cfg.seed}
    with tempfile.TemporaryDirectory(prefix="zoo-family-") as tmp:
        ctx = FoldContext(cfg=cfg, dataset=dataset, fold=fold, split=split, run=run, out_dir=Path(tmp),
                          checkpoint_dir=ckpt_dir, progress=progress, callbacks=callbacks, classes=classes,
                          severity=severity_for(classes) if fam.has_classes else None, ontology=ontology,
                          make_loaders=_loader_factory(cfg, dataset, fold, split),
                          options={"embedding_map": embedding_map, "log_model": log_model, "training": training})
        outcome = fam.fit_fold(ctx)
        if not isinstance(outcome, FoldOutcome):
            raise TypeError(f"{type(fam).__name__}.fit_fold must return a FoldOutcome, got {type(outcome).__name__}")
        metrics = dict(outcome.metrics)
        gate = _gate_tags(fam, cfg, fold, split, outcome, cv)
        if cv is not None:  # fold=final: the CV's estimate stands in for the (empty) test set
            metrics.update(cv["estimate"])
        run.log_metrics({k: v for k, v in metrics.items() if k.startswith("test_") or k == "best_epoch"})
        run.set_tags(gate)
        if any(ctx.out_dir.iterdir()):
            run.log_artifacts(ctx.out_dir, "family")
        model_uri = None
        if log_model and outcome.model is not None and run.tracked:
            from zoo.tracking.packaging import log_zoo_model

            model_uri = log_zoo_model(outcome.model, metadata={**gate, **fam.tags()}).model_uri
    return FoldResult(fold, run.run_id, metrics, outcome.best_epoch, outcome.epochs_run, model_uri,
                      seconds=time.perf_counter() - start, test_rows=list(outcome.test_index), gate=gate)


def _dataset_digest(dataset) -> str:
    from zoo.tracking.runs import dataset_digest

    return str(dataset_digest(dataset))


def _gate_tags(fam: Family, cfg: TrainConfig, fold, split, outcome: FoldOutcome, cv) -> dict[str, str]:
    """fold, limit, n_test, test_rows_digest (+ the family's kind/primary metric/direction)."""
    test_ids = set(map(str, outcome.test_index))
    test = split["test"][split["test"]["image"].astype(str).isin(test_ids)]
    if len(test) != len(test_ids):
        raise ValueError(f"{type(fam).__name__}.fit_fold returned test_index rows that are not this fold's test rows")
    tags = {**fam.gate_tags(), "fold": str(fold), "limit": str(cfg.limit) if cfg.limit else "none",
            "n_test": str(len(test)), "test_rows_digest": rows_digest(test) if len(test) else "none"}
    if cv is not None:
        tags.update(n_test=str(cv["n_test"]), test_rows_digest=cv["test_rows_digest"], estimate="cv",
                    cv_parent=cv["run_id"], cv_epochs=str(cv["epochs"]))
    return tags


# --------------------------------------------------------------------------------------------
# CV bookkeeping and fold=final
# --------------------------------------------------------------------------------------------
def _cv_tags(fam: Family, results: list[FoldResult]) -> dict[str, str]:
    """On the CV parent: what fold=final needs (epoch count, the digest of all folds' test rows)."""
    epochs = [r.best_epoch for r in results if r.best_epoch]
    ids = sorted({i for r in results for i in r.test_rows})
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16] if ids else "none"
    return {"cv_epochs": str(int(round(float(np.median(epochs))))) if epochs else "none",
            "cv_test_rows_digest": f"cv-{digest}", "cv_n_test": str(len(ids)),
            "cv_limit": str(fam.cfg.limit) if fam.cfg.limit else "none", "primary_metric": fam.primary_metric}


def _cv_choice(fam: Family, cv_run: str) -> dict[str, Any]:
    """Epoch count and test estimate of the CV parent run ``cv_run`` (a fold=all run)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        run = MlflowClient().get_run(cv_run)
    except MlflowException as exc:
        raise ValueError(f"cv_run {cv_run!r}: no such run ({exc.message})") from None
    tags, metrics = run.data.tags, run.data.metrics
    if tags.get("fold") != "all" or "cv_epochs" not in tags:
        raise ValueError(f"cv_run {cv_run!r} is not the parent run of a fold=all cross-validation")
    if tags.get("family") != fam.cfg.family:
        raise ValueError(f"cv_run {cv_run!r} is a {tags.get('family')!r} run, not {fam.cfg.family!r}")
    if tags.get("cv_limit", "none") != (str(fam.cfg.limit) if fam.cfg.limit else "none"):
        raise ValueError(f"cv_run {cv_run!r} used limit={tags.get('cv_limit')}, this run limit={fam.cfg.limit}: "
                         "train the final model on the data the CV estimated")
    if tags["cv_epochs"] == "none":
        raise ValueError(f"cv_run {cv_run!r} recorded no best epoch")
    keys = [f"test_{fam.primary_metric}"] + (["test_mcs"] if fam.has_classes else [])
    missing = [k for k in keys if f"{k}_mean" not in metrics]
    if missing:
        raise ValueError(f"cv_run {cv_run!r} has no CV mean of {missing}")
    estimate = {k: float(metrics[f"{k}_mean"]) for k in keys}
    estimate.update({f"{k}_std": float(metrics.get(f"{k}_std", float("nan"))) for k in keys})
    return {"run_id": cv_run, "epochs": int(tags["cv_epochs"]), "estimate": estimate,
            "test_rows_digest": tags["cv_test_rows_digest"], "n_test": int(tags.get("cv_n_test", 0))}


def _register(fam: Family, result: FoldResult, extra_tags: Mapping[str, str] | None = None) -> str:
    from zoo.tracking.registry import register

    key = f"test_{fam.primary_metric}"
    tags = {**fam.tags(), **result.gate, **dict(extra_tags or {})}
    for k in (key, "test_mcs"):
        if k in result.metrics and (k == key or fam.has_classes):
            tags[k] = repr(float(result.metrics[k]))
    mv = register(result.run_id, fam.cfg.family, result.model_uri, tags=tags)
    return f"{mv.name}/{mv.version}"


__all__ = ["FoldResult", "TrainingResult", "build_family", "fold_split", "load_dataset", "reuse_loaders",
           "rows_digest", "run_training", "severity_for", "train_fold"]
