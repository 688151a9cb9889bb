"""``tune -P target=svm -P model=models:/zoo-guided/3``: tune only γ/C of a registered model.

The model's encoder is kept bit for bit. Its training fold is rebuilt from the model's own
record (``zoo_model.json``: dataset, fold, limit, seed — the rows training used); the training
and validation rows are embedded once, the inner γ/C study (:mod:`zoo.tune.svm_study`) searches
on the validation rows, and the SVM is refitted on the training rows with calibration, as
training does. The new model (same encoder, extras, classes; new SVM) is logged in a child run of
the study's parent run, its test metrics computed on the same test rows as the source version
(so ``test_rows_digest`` carries over and the promotion gates can compare them), and registered as
a new version ``@candidate``. The test fold is used for those reported metrics only, never to
choose γ/C.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w\-]+))$")


def family_of_model_uri(uri: str) -> str:
    m = _URI.match(str(uri).strip())
    if not m or not m["name"].startswith("zoo-"):
        raise ValueError(f"model must be a registered zoo model such as models:/zoo-guided/3 or "
                         f"models:/zoo-guided@production, got {uri!r}")
    return m["name"][len("zoo-"):]


def resolve_version(uri: str):
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from zoo.tracking import store

    m = _URI.match(str(uri).strip())
    if not m:
        raise ValueError(f"model must look like models:/zoo-guided/3 or models:/zoo-guided@candidate, got {uri!r}")
    store.configure()
    client = MlflowClient()
    try:
        if m["version"]:
            return client.get_model_version(m["name"], m["version"])
        return client.get_model_version_by_alias(m["name"], m["alias"])
    except MlflowException as exc:
        raise ValueError(f"no registered model {uri}: {exc.message}. List them with `zoo models list`") from None


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _zoo_folder(uri: str, dest: Path) -> Path:
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest)))
    found = sorted(local.rglob("zoo_model.json"))
    if not found:
        raise ValueError(f"{uri} holds no zoo model (no zoo_model.json): target=svm needs a model trained by the zoo")
    return found[0].parent


def _embed(model, dataset, rows, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    index = {c: i for i, c in enumerate(classes)}
    keep = rows[rows["label"].astype(str).isin(index)]
    if len(keep) < len(rows):
        log.warning("%d rows have classes the model does not know: left out", len(rows) - len(keep))
    paths = [str(p) for p in dataset.image_paths(keep)]
    return model.embed(paths), np.asarray([index[str(c)] for c in keep["label"]], dtype=int)


def tune_registered_svm(p) -> Any:
    """``p``: a checked :class:`zoo.tune.study.Plan` with ``target == "svm"``."""
    import mlflow

    from zoo.evaluate.metrics import classification_metrics, scalar_metrics
    from zoo.evaluate.svm import SVMStage
    from zoo.families.runner import fold_split, load_dataset, severity_for
    from zoo.knowledge import load_ontology
    from zoo.models.embedding_svm import ENCODER_FILE, EmbeddingSVMModel
    from zoo.models.zoo_model import load_zoo_model
    from zoo.tracking.packaging import log_zoo_model
    from zoo.tracking.registry import register
    from zoo.tune.mlflow_nesting import StudyRuns
    from zoo.tune.storage import worker_id
    from zoo.tune.study import StudyReport
    from zoo.tune.svm_study import grid_baseline, tune_svm

    uri = p.request.model
    if not uri:
        raise ValueError("target=svm needs the registered model: -P model=models:/zoo-guided/3")
    family = family_of_model_uri(uri)
    if family != p.request.family:
        raise ValueError(f"model {uri} is of family {family!r}, not {p.request.family!r}: drop -P family or match it")
    if p.inner_trials < 1:
        raise ValueError("target=svm tunes γ/C with the inner study: -P inner_trials must be >= 1 (e.g. 60)")
    source = resolve_version(uri)
    primary = p.family_cls.primary_metric or "macro_f1"
    direction = p.family_cls.direction or "maximize"
    with tempfile.TemporaryDirectory(prefix="zoo-svm-target-") as tmp:
        folder = _zoo_folder(f"models:/{source.name}/{source.version}", Path(tmp))
        model = load_zoo_model(folder, device=getattr(p.family_obj.cfg, "device", "auto"))
        if not isinstance(model, EmbeddingSVMModel):
            raise ValueError(f"{uri} is a {model.kind!r} model; target=svm needs an encoder + SVM model "
                             "(kind embedding_svm: tml, guided, smr...)")
        training = model.training
        missing = [k for k in ("dataset", "fold") if training.get(k) in (None, "")]
        if missing:
            raise ValueError(f"{uri} does not record its training {missing}; retrain it with this zoo version")
        dataset = load_dataset(str(training["dataset"]))
        if training.get("manifest_digest") and training["manifest_digest"] != dataset.digest:
            raise ValueError(f"dataset {dataset.name!r} changed since {uri} was trained (manifest digest "
                             f"{dataset.digest} vs {training['manifest_digest']}): tune on the data it was trained on")
        fold = training["fold"]
        fold = int(fold) if str(fold).isdigit() else str(fold)
        limit = training.get("limit")
        limit = None if limit in (None, "none", "None", "") else int(limit)
        split = fold_split(dataset, fold, limit, int(training.get("seed") or 0))
        classes = list(model.classes)
        tr, ty = _embed(model, dataset, split["train"], classes)
        va, vy = _embed(model, dataset, split["val"], classes)
        ontology = load_ontology()
        severity = severity_for(classes)
        grid_value, grid_params = grid_baseline(tr, ty, va, vy, classes=classes, severity=severity,
                                                ontology=ontology, metric=primary, seed=p.seed)
        old_pred = model.svm.predict(va)
        old_val = classification_metrics(vy, old_pred, classes, severity=severity, ontology=ontology)[primary]
        result = tune_svm(tr, ty, va, vy, classes=classes, severity=severity, ontology=ontology, metric=primary,
                          direction=direction, n_trials=p.inner_trials, seed=p.seed, space=p.overrides)
        svm = SVMStage(random_state=p.seed).refit_only(tr, ty, params=result.params)  # calibrated, as training
        new = EmbeddingSVMModel(model.family, model.encoder, svm, classes, img_size=model.img_size,
                                extras=model.extras, config=model.config, device="cpu",
                                knowledge_dir=model.knowledge_dir, training=training,
                                represent=getattr(model, "represent", "embedding"))
        metrics = {f"val_{k}": v for k, v in scalar_metrics(result.val_metrics, "").items()}
        trust_test = None
        if len(split["test"]):
            te, tey = _embed(model, dataset, split["test"], classes)
            test = classification_metrics(tey, svm.predict(te), classes, severity=severity, ontology=ontology)
            metrics.update(scalar_metrics(test, "test_"))
            trust_test = (te, tey)
        metrics.pop("test_n", None)
        metrics.pop("val_n", None)

        runs = StudyRuns(p.study_name, family, worker=worker_id(), storage="memory (inner study)",
                         tags={"target": "svm", "source_model": f"{source.name}/{source.version}"},
                         params={"inner_trials": p.inner_trials, "model": uri})
        run = runs.client.create_run(runs.experiment_id, run_name=f"{p.study_name}-svm-{source.name}-v{source.version}",
                                     tags={"mlflow.parentRunId": runs.parent_id})
        run_id = run.info.run_id
        status = "FAILED"
        try:
            source_tags = dict(source.tags)
            with mlflow.start_run(run_id=run_id):
                if getattr(model, "trust", None) is not None:
                    # the source's prediction sets were calibrated on the old SVM's probabilities:
                    # recalibrate on the same validation rows, as training does (zoo.evaluate.trust)
                    from zoo.evaluate.trust import class_probabilities, fold_trust
                    from zoo.tracking.runs import TrackedRun

                    test_arg = None if trust_test is None else (
                        class_probabilities(svm, trust_test[0], classes), trust_test[1], svm.predict(trust_test[0]))
                    new.trust, trust_metrics = fold_trust(TrackedRun(run_id), classes,
                                                          (class_probabilities(svm, va, classes), vy), test_arg)
                    metrics.update(trust_metrics)
                runs.log_trial(run_id, metrics={**metrics, **result.as_metrics(), "grid_val_" + primary: grid_value,
                                                "source_val_" + primary: float(old_val)},
                               tags={**{k: v for k, v in source_tags.items() if k not in ("run_id",)},
                                     "tune_role": "svm", "source_model": f"{source.name}/{source.version}",
                                     "source_run_id": source.run_id, "study": p.study_name})
                info = log_zoo_model(new, metadata={"source_model": f"{source.name}/{source.version}"})
            status = "FINISHED"
        finally:
            runs.client.set_terminated(run_id, status)
            runs.finish(status)
        with tempfile.TemporaryDirectory(prefix="zoo-svm-check-") as tmp2:
            again = _zoo_folder(info.model_uri, Path(tmp2))
            same = file_sha256(again / ENCODER_FILE) == file_sha256(folder / ENCODER_FILE)
        if not same:
            raise RuntimeError("the re-packaged encoder differs from the source model's: nothing registered")
        registered = None
        if p.register:
            tags = {k: v for k, v in source_tags.items() if k != "run_id"}
            tags.update({"study": p.study_name, "source_model": f"{source.name}/{source.version}",
                         "tuned_by": "optuna-svm", "svm_gamma": repr(result.gamma), "svm_C": repr(result.C),
                         "encoder_sha256": file_sha256(folder / ENCODER_FILE)})
            for key in (f"test_{primary}", "test_mcs"):
                if key in metrics:
                    tags[key] = repr(float(metrics[key]))
            mv = register(run_id, family, info.model_uri, tags=tags)
            registered = f"{mv.name}/{mv.version}"
            runs.set_tags(runs.parent_id, {"registered_version": registered})
    best = [{"number": 0, "values": [result.value], "params": result.params, "grid_val": grid_value,
             "source_val": float(old_val), "grid_params": grid_params, "run_id": run_id,
             **{k: v for k, v in metrics.items() if k.startswith("test_") and k in (f"test_{primary}", "test_mcs")}}]
    return StudyReport(p.study_name, "memory (inner study)", runs.parent_id, result.n_trials, 0, 0, best, registered)
