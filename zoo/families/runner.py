"""One training job, for any family: data → encoder → Trainer → SVM stage → test metrics → MLflow
run (params, per-epoch metrics, dataset input, plots) → pyfunc model → registry ``@candidate``.

``fold=all`` runs every CV iteration as a nested child run under one parent, which logs mean ± std
of every test metric; the child with the best validation macro-F is registered.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from zoo.families.base import Family
from zoo.families.params import TrainConfig, resolve_config

log = logging.getLogger(__name__)


@dataclass
class FoldResult:
    fold: int
    run_id: str
    metrics: dict[str, float]          # test_* and best val_* scalars
    best_epoch: int | None
    epochs_run: int
    model_uri: str | None = None
    model_version: str | None = None
    seconds: float = 0.0


@dataclass
class TrainingResult:
    family: str
    config: TrainConfig
    folds: list[FoldResult]
    run_id: str                         # the run (single fold) or the CV parent
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    registered: str | None = None       # "zoo-<family>/<version>"

    def metric(self, name: str) -> float:
        """Test metric of a single-fold job, or its CV mean."""
        if self.summary:
            return float(self.summary[name]["mean"])
        return float(self.folds[0].metrics[name])

    def describe(self) -> str:
        lines = [f"{self.family}: run {self.run_id} on dataset {self.config.dataset!r}"]
        for r in self.folds:
            lines.append(f"  fold {r.fold}: test macro-F {r.metrics.get('test_macro_f1', float('nan')):.4f}  "
                         f"MCS {r.metrics.get('test_mcs', float('nan')):.4f}  best epoch {r.best_epoch}/"
                         f"{r.epochs_run}  ({r.seconds:.0f} s)")
        if self.summary:
            for key in ("test_macro_f1", "test_mcs", "test_macro_f1_tolerant"):
                if key in self.summary:
                    s = self.summary[key]
                    lines.append(f"  {key}: {s['mean']:.4f} ± {s['std']:.4f} over {s['n']} folds")
        if self.registered:
            lines.append(f"  registered {self.registered} with alias @candidate "
                         f"(promote: zoo models promote {self.registered.replace('/', ' ')} production)")
        return "\n".join(lines)


def run_training(family: str, raw: Mapping[str, Any], *, progress: bool = True) -> TrainingResult:
    from zoo.families import FAMILIES
    from zoo.tracking import store
    from zoo.tracking.runs import log_cv_summary, start_run

    fam_cls = FAMILIES.get(family)
    cfg = resolve_config(family, raw, fam_cls.param_names)
    fam: Family = fam_cls(cfg)  # parses the family's own parameters: fail before any run exists
    dataset = load_dataset(cfg.dataset)
    if cfg.fold != "all" and not 0 <= int(cfg.fold) < dataset.n_folds:
        raise ValueError(f"fold {cfg.fold} does not exist: dataset {dataset.name!r} has "
                         f"{dataset.n_folds} folds (use 0..{dataset.n_folds - 1} or 'all')")
    store.configure()
    _warn_foreign_experiment(family)
    params = {**cfg.to_dict(), **{f"{k}": v for k, v in fam.params.items()}}

    if cfg.fold == "all":
        with start_run(family, dataset=dataset, fold="all", params=params, config=params,
                       name_parts=[*fam.name_parts(), "cv"], tags=fam.tags()) as parent:
            results = [_train_fold(fam, cfg, dataset, k, nested=True, progress=progress)
                       for k in range(dataset.n_folds)]
            summary = log_cv_summary(parent, [r.metrics for r in results])
            best = max(results, key=lambda r: r.metrics.get("val_macro_f1", -1.0))
            registered = None
            if cfg.register and best.model_uri:
                registered = _register(fam, best.run_id, best.model_uri, extra_tags={"cv_parent": parent.run_id})
                parent.set_tags({"registered_version": registered, "registered_fold": str(best.fold)})
            return TrainingResult(family, cfg, results, parent.run_id, summary, registered)

    result = _train_fold(fam, cfg, dataset, int(cfg.fold), nested=False, progress=progress)
    registered = None
    if cfg.register and result.model_uri:
        registered = _register(fam, result.run_id, result.model_uri)
    return TrainingResult(family, cfg, [result], result.run_id, {}, registered)


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


def _checkpoint_dir(cfg: TrainConfig, fam: Family, fold: int) -> Path:
    """Stable per configuration and fold, so ``resume=true`` finds the interrupted run's state."""
    from zoo.paths import project_dir

    keyed = {k: v for k, v in cfg.to_dict().items() if k not in ("resume", "register", "device", "num_workers")}
    keyed.update(fam.params, fold=fold)
    digest = hashlib.sha1(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return project_dir() / "checkpoints" / cfg.family / f"{cfg.dataset}-f{fold}-{digest}"


def m_per_class(batch_size: int, n_classes: int) -> int:
    """Images per class in a batch for triplet mining: the smallest divisor of ``batch_size`` that is
    at least 2 and lets ``n_classes`` classes fill the batch (pytorch-metric-learning's
    MPerClassSampler needs ``batch_size % m == 0`` and ``m * n_classes >= batch_size``)."""
    need = max(2, -(-batch_size // max(1, n_classes)))
    for m in range(need, batch_size + 1):
        if batch_size % m == 0:
            return m
    return batch_size


def severity_for(classes: list[str]) -> pd.DataFrame | None:
    """The severity matrix for ``classes``. Classes outside the 15 of the guide papers (e.g. PBC's
    platelet or unstaged erythroblast) have no expert value; they get the matrix's typical values
    by lineage — 2 within a lineage, 4 across (the rule the expert matrix follows) — so MCS stays
    defined. The run is tagged ``mcs_severity=extended`` when that happens."""
    from zoo.knowledge import load_matrix, load_ontology

    ont = load_ontology()
    full = load_matrix("severity")
    known = [c for c in classes if c in full.index]
    if len(known) == len(classes):
        return load_matrix("severity", classes=classes)
    sev = pd.DataFrame(4, index=classes, columns=classes, dtype=int)
    for t in classes:
        for p in classes:
            if t == p:
                sev.loc[t, p] = 0
            elif t in full.index and p in full.index:
                sev.loc[t, p] = int(full.loc[t, p])
            elif ont.lineage(t) == ont.lineage(p):
                sev.loc[t, p] = 2
    return sev


def _train_eval_loader(train_loader):
    """The training set without augmentation, sharing the decoded-image cache of ``train_loader``
    (decoding twice would double the start-up time and the memory)."""
    from torch.utils.data import DataLoader

    from zoo.data.transforms import eval_transform

    ds = copy.copy(train_loader.dataset)
    ds.train = False
    ds.transform = eval_transform(ds.img_size)
    return DataLoader(ds, batch_size=train_loader.batch_size, shuffle=False,
                      num_workers=train_loader.num_workers, pin_memory=train_loader.pin_memory,
                      persistent_workers=train_loader.num_workers > 0)


# Decoded loaders shared by consecutive trainings on the same fold (see ``reuse_loaders``).
_LOADER_CACHE: dict | None = None


@contextmanager
def reuse_loaders():
    """Within this context, trainings on the same dataset/fold/size reuse the decoded images
    instead of decoding them again (what the guide comparison does dozens of times)."""
    global _LOADER_CACHE
    previous, _LOADER_CACHE = _LOADER_CACHE, {}
    try:
        yield
    finally:
        _LOADER_CACHE = previous


def _train_fold(fam: Family, cfg: TrainConfig, dataset, fold: int, *, nested: bool, progress: bool,
                log_model: bool = True, embedding_map: str = "auto", checkpoints: bool = True) -> FoldResult:
    import mlflow

    from zoo.tracking.runs import start_run

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
            if outer is not None and not nested:
                # `mlflow run` made a new run for this invocation; the work continues in the old one.
                mlflow.set_tags({"resumed_into": resume_run})
                mlflow.end_run()
    params = {**cfg.to_dict(), **fam.params, "fold": fold}
    with start_run(cfg.family, dataset=dataset, fold=fold, params=params, config=params, nested=nested,
                   name_parts=fam.name_parts(), tags=fam.tags(), run_id=None if nested else resume_run) as run:
        return _train_in_run(run, fam, cfg, dataset, fold, ckpt_dir, progress, log_model, embedding_map)


def _train_in_run(run, fam: Family, cfg: TrainConfig, dataset, fold: int, ckpt_dir: Path | None, progress: bool,
                  log_model: bool = True, embedding_map: str = "auto") -> FoldResult:
    from zoo.data.datasets import make_loaders
    from zoo.evaluate.svm import SVMStage
    from zoo.evaluate.metrics import classification_metrics, scalar_metrics
    from zoo.evaluate.plots import plot_confusion_matrix, plot_embedding_map
    from zoo.knowledge import load_ontology
    from zoo.models import create_encoder
    from zoo.tracking.packaging import log_pipeline
    from zoo.tracking.pipeline import Pipeline
    from zoo.train import Trainer, seed_everything

    start = time.perf_counter()
    seed_everything(cfg.seed)
    key = (str(dataset.path), dataset.digest, fold, cfg.img_size, cfg.batch_size, cfg.num_workers, cfg.limit, cfg.seed)
    loaders = _LOADER_CACHE.get(key) if _LOADER_CACHE is not None else None
    if loaders is None:
        loaders = make_loaders(dataset, fold, cfg.img_size, cfg.batch_size, num_workers=cfg.num_workers,
                               limit=cfg.limit, seed=cfg.seed, sampler="m_per_class",
                               m_per_class=m_per_class(cfg.batch_size, len(dataset.classes)))
        if _LOADER_CACHE is not None:
            _LOADER_CACHE.clear()  # one fold at a time: bounded memory
            _LOADER_CACHE[key] = loaders
    classes = list(dataset.classes)
    ontology = load_ontology()
    severity = severity_for(classes)
    if any(c not in load_ontology().default_classes for c in classes):
        run.set_tags({"mcs_severity": "extended"})

    with tempfile.TemporaryDirectory(prefix="zoo-family-") as tmp:
        fam_dir = Path(tmp)
        fam.prepare(classes, fam_dir)
        encoder = create_encoder(cfg.backbone, cfg.embedding_dim, pretrained=cfg.pretrained, img_size=cfg.img_size)
        loss = fam.build_loss(classes)
        trainer = Trainer(
            encoder, loss, loaders["train"], loaders["val"], epochs=cfg.epochs, patience=cfg.patience,
            lr=cfg.lr, device=cfg.device, callbacks=fam.callbacks(loss), checkpoint_dir=ckpt_dir,
            resume=cfg.resume, svm_every=cfg.svm_every, train_eval_loader=_train_eval_loader(loaders["train"]),
            classes=classes, severity=severity, ontology=ontology, seed=cfg.seed, progress=progress,
            # Validation only needs decisions: no calibration, grid search on a subsample.
            svm=SVMStage(random_state=cfg.seed, calibrate=False, max_search=cfg.svm_max_search),
            logger=run, extra={"run_id": run.run_id},
        )
        fit = trainer.fit()

        # Test: the best epoch's weights and SVM hyper-parameters; the packaged SVM is refitted on
        # all training embeddings with calibrated probabilities.
        if fit.svm is None:
            raise RuntimeError("training ended without a fitted SVM stage (no validation ran)")
        train_emb, train_y = trainer.embed(trainer.train_eval_loader, desc="embed train")  # best weights
        svm = SVMStage(random_state=cfg.seed).refit_only(train_emb, train_y, params=fit.svm.best_params_)
        test_emb, test_y = trainer.embed(loaders["test"], desc="embed test")
        pred = svm.predict(test_emb)
        test = classification_metrics(test_y, pred, classes, severity=severity, ontology=ontology)
        metrics = scalar_metrics(test, "test_")
        metrics.pop("test_n", None)
        metrics.update({k: v for k, v in fit.best.items() if k.startswith("val_")})
        metrics["best_epoch"] = float(fit.best_epoch or 0)
        run.log_metrics({k: v for k, v in metrics.items() if k.startswith("test_") or k == "best_epoch"})
        run.log_metrics_json({"test": test, "best_epoch": fit.best_epoch, "history": fit.history})
        title = run_title(fam, cfg, fold)
        run.log_figure(plot_confusion_matrix(test["confusion_matrix"], classes, ontology=ontology,
                                             title=f"{title} — test"), "plots/confusion_matrix.png")
        run.log_figure(plot_embedding_map(test_emb, test_y, classes, ontology=ontology, method=embedding_map,
                                          title=f"{title} — test embeddings", random_state=cfg.seed),
                       "plots/embedding_map.png")
        run.log_figure(plot_history(fit.history), "plots/history.png")
        if any(fam_dir.iterdir()):
            run.log_artifacts(fam_dir, "family")

        model_uri = None
        if log_model:  # the guide comparison skips it: dozens of runs, compared by metrics only
            extras = fam.pipeline_extras(loss, train_emb, train_y, classes)
            pipeline = Pipeline(cfg.family, encoder.cpu(), svm, classes, img_size=cfg.img_size, extras=extras,
                                config={**cfg.to_dict(), **fam.params, "fold": fold}, device="cpu")
            model_uri = log_pipeline(pipeline, metadata={"fold": fold, **fam.tags()}).model_uri
    return FoldResult(fold, run.run_id, metrics, fit.best_epoch, fit.epochs_run, model_uri,
                      seconds=time.perf_counter() - start)


def run_title(fam: Family, cfg: TrainConfig, fold: int) -> str:
    return " ".join([cfg.family, *fam.name_parts(), cfg.dataset, f"fold {fold}"])


def plot_history(history: list[dict[str, float]]):
    """Loss and validation metrics per epoch, the two curves people look at first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = pd.DataFrame(history)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    if "train_loss" in frame:
        a.plot(frame["epoch"], frame["train_loss"], marker=".")
    a.set(xlabel="epoch", ylabel="train loss")
    for key in ("val_macro_f1", "val_macro_f1_tolerant", "val_mcs_norm"):
        if key in frame:
            b.plot(frame["epoch"], frame[key], marker=".", label=key)
    b.set(xlabel="epoch", ylabel="validation")
    b.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _register(fam: Family, run_id: str, model_uri: str, extra_tags: Mapping[str, str] | None = None) -> str:
    from zoo.tracking.registry import register

    mv = register(run_id, fam.name, model_uri, tags={**fam.tags(), **dict(extra_tags or {})})
    return f"{mv.name}/{mv.version}"
