"""Evaluate any model (registered, or a run's) on a prepared dataset, logging the same metrics and
plots as training to the experiment ``zoo-evaluate``.

```python
from zoo.tracking.evaluation import evaluate_model
m = evaluate_model("models:/zoo-tml@production", "pbc", fold="all", class_map="maps/pbc.yaml")
m["macro_f1"], m["mcs"]
```

**Which images.** ``fold="test"``: the test fold of CV iteration 0 (what training reports as
``test_*`` for fold 0); ``fold=k``: the test fold of iteration k; ``fold="all"``: every image (the
usual choice for an external dataset). ``limit`` keeps a seeded stratified subset of that many
(every class keeps its share; version tags then go under ``eval.<dataset>.<fold>-n<limit>.*``).

**Class maps** (external validation, when the dataset's classes differ from the model's). A YAML
file (or dict) in one of two forms:

```yaml
# 1. dataset class -> model class (the default form): y_true is translated into the model's
#    classes, metrics are over the model's label space. null drops that class's images
#    (a class the model cannot know).
segmented_neutrophil: segmented_neutrophil
band_neutrophil: segmented_neutrophil
immature_granulocyte: null
```
```yaml
# 2. model class -> dataset class: predictions are translated into the dataset's (coarser)
#    classes, metrics are over the dataset's label space.
direction: model_to_dataset
map:
  band_neutrophil: neutrophil
  segmented_neutrophil: neutrophil
```
Classes not mentioned keep their name. In form 1 every dataset class must then be a model class
(or be mapped to one, or to null); otherwise the evaluation stops and lists the unmapped classes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from zoo.tracking import store

EXPERIMENT = "zoo-evaluate"
DIRECTIONS = ("dataset_to_model", "model_to_dataset")
_CHUNK = 256  # images per pyfunc call: bounds memory and drives the progress bar


@dataclass(frozen=True)
class ClassMap:
    direction: str
    mapping: dict[str, str | None]
    source: str = "inline"

    @classmethod
    def load(cls, spec: "str | Path | Mapping[str, Any] | ClassMap | None") -> "ClassMap | None":
        if spec is None or isinstance(spec, ClassMap):
            return spec
        source = "inline"
        if isinstance(spec, (str, Path)):
            if str(spec).strip().lower() in ("", "none", "null"):
                return None
            import yaml

            path = Path(spec).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"class map {spec} not found (a YAML file: dataset class -> model class)")
            spec, source = yaml.safe_load(path.read_text()) or {}, str(path)
        if not isinstance(spec, Mapping):
            raise ValueError(f"class map {source} must be a mapping, got {type(spec).__name__}")
        direction = "dataset_to_model"
        if "direction" in spec or "map" in spec:
            direction = str(spec.get("direction", direction))
            if direction not in DIRECTIONS:
                raise ValueError(f"class map {source}: direction must be one of {DIRECTIONS}, got {direction!r}")
            spec = spec.get("map")
            if not isinstance(spec, Mapping):
                raise ValueError(f"class map {source}: 'map' must be a mapping of class -> class")
        mapping: dict[str, str | None] = {}
        for k, v in spec.items():
            if v is not None and not isinstance(v, str):
                raise ValueError(f"class map {source}: {k!r} maps to {v!r}; expected a class id or null")
            mapping[str(k)] = v
        if direction == "model_to_dataset" and any(v is None for v in mapping.values()):
            raise ValueError(f"class map {source}: model_to_dataset maps every model class to a dataset "
                             "class; null is only allowed in the dataset -> model form")
        return cls(direction, mapping, source)


def _resolve_version(model_uri: str) -> dict[str, str]:
    """Registry name/version behind a ``models:/name@alias`` or ``models:/name/version`` URI."""
    m = re.match(r"^models:/([^/@]+)(?:@([\w\-]+)|/(\d+))?/?$", model_uri)
    if not m or not (m.group(2) or m.group(3)):
        return {}
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    name, alias, version = m.groups()
    try:
        mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except Exception:
        return {}
    out = {"model_name": name, "model_version": str(mv.version)}
    if alias:
        out["model_alias"] = alias
    for key in ("family", "dataset", "dataset_digest", "guide", "curve", "method"):
        if key in mv.tags:
            out[f"model_{key}"] = mv.tags[key]
    return out


def _select(ds, fold: int | str, limit: int | None, seed: int = 0) -> pd.DataFrame:
    if fold == "all":
        df = ds.manifest
    else:
        k = 0 if fold == "test" else int(fold)
        if not 0 <= k < int(ds.n_folds):
            raise ValueError(f"fold must be 'test', 'all' or 0..{int(ds.n_folds) - 1} for {ds.name}, got {fold!r}")
        df = ds.split(k)["test"]
    if limit is not None:
        limit = int(limit)
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        if len(df) > limit:  # stratified: every class keeps its share (a random sample could drop one)
            from zoo.data.datasets import stratified_subsample

            df = stratified_subsample(df, limit, seed=seed).sort_index()  # by (label, fold)
    if len(df) == 0:
        raise ValueError(f"no images to evaluate in {ds.name} (fold={fold})")
    return df


def _predict(model, paths: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    from tqdm.auto import tqdm

    parts = []
    for start in tqdm(range(0, len(paths), _CHUNK), desc="evaluate", unit="chunk",
                      disable=None if len(paths) > _CHUNK else True):
        parts.append(model.predict(pd.DataFrame({"image": paths[start : start + _CHUNK]}),
                                   params={"return_embedding": True}))
    out = pd.concat(parts, ignore_index=True)
    emb = np.asarray(out.pop("embedding").tolist(), dtype=np.float32)
    return out, emb


def _order(classes: list[str]) -> list[str]:
    try:
        from zoo.knowledge import load_ontology

        ordered = list(load_ontology().order(classes))
        return ordered if sorted(ordered) == sorted(classes) else classes
    except Exception:  # classes the ontology does not know keep their given order
        return classes


def severity_for(classes: list[str]) -> pd.DataFrame:
    """The severity matrix for ``classes``. Classes outside the 15 of the guide papers (e.g. PBC's
    platelet or unstaged erythroblast) have no expert value; they get the matrix's typical values
    by lineage — 2 within a lineage, 4 across (the rule the expert matrix follows) — so MCS stays
    defined. Training tags the run ``mcs_severity=extended`` when that happens."""
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


def _severity(classes: list[str]):
    """The severity matrix training uses for these classes, or None when the ontology does not
    know a class."""
    try:
        return severity_for(classes)
    except Exception:  # unknown classes: MCS is undefined, the other metrics still are
        return None


def _apply_map(y_true: np.ndarray, y_pred: np.ndarray, model_classes: list[str], dataset_classes: list[str],
               cmap: ClassMap | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Bring truth and predictions into one label space; returns (keep mask, y_true, y_pred, classes)."""
    keep = np.ones(len(y_true), dtype=bool)
    if cmap is None or cmap.direction == "dataset_to_model":
        mapping = cmap.mapping if cmap else {}
        unknown_keys = sorted(set(mapping) - set(dataset_classes))
        if cmap and unknown_keys and len(unknown_keys) == len(mapping):
            raise ValueError(f"class map {cmap.source}: none of its keys {unknown_keys[:8]} is a class of the "
                             f"dataset ({dataset_classes}); is it the model_to_dataset form (add "
                             "'direction: model_to_dataset')?")
        bad_targets = sorted({v for v in mapping.values() if v is not None} - set(model_classes))
        if bad_targets:
            raise ValueError(f"class map {cmap.source}: {bad_targets} are not classes of the model "
                             f"({model_classes})")
        mapped = np.array([mapping.get(c, c) for c in y_true], dtype=object)
        keep = np.array([m is not None for m in mapped])
        unmapped = sorted({str(m) for m in mapped[keep]} - set(model_classes))
        if unmapped:
            raise ValueError(
                f"dataset classes {unmapped} are not classes of the model ({model_classes}); pass a class map "
                "YAML mapping each to a model class (or to null to leave its images out)")
        y_true = mapped
        classes = list(model_classes)  # the model's label space, in its own order
    else:
        bad_keys = sorted(set(cmap.mapping) - set(model_classes))
        if bad_keys:
            raise ValueError(f"class map {cmap.source}: {bad_keys} are not classes of the model ({model_classes})")
        y_pred = np.array([cmap.mapping.get(c, c) for c in y_pred], dtype=object)
        classes = _order(sorted(set(map(str, y_true)) | set(map(str, y_pred))))
    return keep, y_true, y_pred, classes


def evaluate_model(
    model_uri: str,
    dataset,
    fold: int | str = "test",
    class_map: "str | Path | Mapping[str, Any] | None" = None,
    limit: int | None = None,
    *,
    device: str = "auto",
    seed: int = 0,
    embedding_map: str = "auto",
    log_to_mlflow: bool = True,
) -> dict[str, Any]:
    """Predict ``dataset`` (a prepared dataset's name or folder, or a ``PreparedDataset``) with
    ``model_uri`` and compute :func:`zoo.evaluate.classification_metrics` (macro-F, balanced
    accuracy, MCS, strict/tolerant macro-F, per class). Logs a run in ``zoo-evaluate`` (or the run
    ``mlflow run`` started) with tags model_uri, model_name/version, dataset, dataset_digest, fold;
    metrics; ``metrics.json``; ``predictions.csv``; the confusion matrix and embedding map.
    ``embedding_map``: method of the 2-D map plot (auto = UMAP when installed, umap, pca, none).
    Returns the metrics dict (plus ``n_images``, ``n_dropped``, ``run_id``)."""
    import mlflow

    from zoo.data import PreparedDataset
    from zoo.evaluate import classification_metrics, plot_confusion_matrix, plot_embedding_map
    from zoo.tracking.runs import run_name, start_run

    if fold not in ("test", "all"):
        try:
            fold = int(fold)
        except (TypeError, ValueError):
            raise ValueError(f"fold must be 'test', 'all' or a fold number, got {fold!r}") from None
    from zoo.evaluate.external import ExternalMap, external_agreement, plot_agreement

    # A map naming abstentions (004, Fig. 4: artefact / not identifiable / null = no call) takes
    # the external-validation path of zoo.evaluate.external; any other map keeps ClassMap's meaning.
    emap = ExternalMap.load(class_map) if ExternalMap.wants(class_map) else None
    cmap = None if emap else ClassMap.load(class_map)
    store.configure()
    ds = dataset if hasattr(dataset, "manifest") else PreparedDataset.load(dataset)
    df = _select(ds, fold, limit, seed)
    version = _resolve_version(model_uri)

    try:
        meta = mlflow.models.get_model_info(model_uri).metadata or {}
    except Exception as exc:
        raise ValueError(f"cannot open model {model_uri}: {str(exc).splitlines()[0]}") from None
    model_classes = [str(c) for c in meta.get("classes", [])]
    if not model_classes:
        raise ValueError(f"{model_uri} has no class list in its metadata: evaluate compares class labels, so it "
                         "takes zoo models of a kind with classes (or it is not a zoo model)")
    dataset_classes = sorted(set(df["label"].astype(str)))
    y_true_raw = df["label"].astype(str).to_numpy(dtype=object)
    # Check the class map against the dataset before spending time on loading and predicting.
    if emap:
        emap.check(model_classes, dataset_classes)
    else:
        _apply_map(y_true_raw, np.full(len(df), model_classes[0], dtype=object), model_classes, dataset_classes, cmap)
    if embedding_map not in ("auto", "umap", "pca", "none"):
        raise ValueError(f"embedding_map must be auto, umap, pca or none, got {embedding_map!r}")

    model = mlflow.pyfunc.load_model(model_uri, model_config={"device": device})

    paths = [str(p) for p in ds.image_paths(df)]
    preds, emb = _predict(model, paths)
    ext = None
    if emap:
        ext = external_agreement(y_true_raw, preds["label"].astype(str).tolist(), model_classes, emap)
        keep, y_true, y_pred = ext.scored, y_true_raw, ext.y_pred_mapped
        classes = _order(sorted({str(v) for v in y_true[keep]} | {str(v) for v in y_pred[keep]}))
    else:
        keep, y_true, y_pred, classes = _apply_map(y_true_raw, preds["label"].astype(str).to_numpy(dtype=object),
                                                   model_classes, dataset_classes, cmap)
    from zoo.knowledge import load_ontology

    ontology = load_ontology()
    metrics = classification_metrics(y_true[keep], y_pred[keep], classes, severity=_severity(classes),
                                     ontology=_tolerance_ontology(ontology, classes))
    metrics["n_images"] = int(keep.sum())
    metrics["n_dropped"] = int((~keep).sum())
    trust_figures = _trust_report(model, preds, metrics, y_true_raw, y_true, keep, cmap, emap, ext,
                                  f"{model_uri} on {ds.name}")
    if ext is not None:
        metrics.update(ext.counts)  # coverage, n_abstained, n_ignored, abstained_<class>

    if not log_to_mlflow:
        import matplotlib.pyplot as plt

        for fig in trust_figures.values():
            plt.close(fig)
        return metrics
    family = meta.get("zoo_family") or version.get("model_family") or "unknown"
    label = (f"{version['model_name']}-v{version['model_version']}" if version else family)
    fold_txt = "all" if fold == "all" else f"test{0 if fold == 'test' else fold}"
    tags = {"model_uri": model_uri, "family": family, "evaluated_family": family, **version,
            "class_map": (cmap or emap).source if (cmap or emap) else "none", "eval_fold": fold_txt}
    with start_run("evaluate", dataset=ds, fold=fold, run_name=run_name("eval", label, _map_name(cmap or emap),
                                                                          dataset=ds.name, fold=fold_txt),
                   tags=tags, log_dataset=False,
                   params={"model": model_uri, "dataset": ds.name, "fold": fold, "limit": limit,
                           "class_map": (cmap or emap).source if (cmap or emap) else "none", "device": device}) as run:
        run.log_dataset(ds, context="evaluation", frame=df)
        run.log_metrics(metrics)
        run.log_metrics_json(metrics)
        for name, fig in trust_figures.items():
            run.log_figure(fig, name)
        if cmap:
            run.log_dict({"direction": cmap.direction, "map": cmap.mapping}, "class_map.yaml")
        if ext is not None:
            run.log_dict({"direction": "model_to_dataset", "map": emap.mapping, "abstain": list(emap.abstain),
                          "ignore": list(emap.ignore)}, "class_map.yaml")
            _log_table(run, ext.agreement.reset_index(), "agreement.csv")
            run.log_figure(plot_agreement(ext.agreement, emap.abstain, title=f"{label} on {ds.name}: coverage "
                                          f"{ext.counts['coverage']:.0%} ({ext.counts['n_scored']} of "
                                          f"{ext.counts['n_total'] - ext.counts['n_ignored']})"),
                           "plots/agreement.png")
        table = pd.DataFrame({"image": df["image"].to_numpy(), "true": y_true_raw, "true_mapped": y_true,
                              "predicted": y_pred, "kept": keep})
        _log_table(run, pd.concat([table, preds.drop(columns=["label"])], axis=1), "predictions.csv")
        run.log_figure(plot_confusion_matrix(metrics["confusion_matrix"], classes, ontology=ontology,
                                             title=f"{label} on {ds.name} ({fold_txt})"),
                       "plots/confusion_matrix.png")
        if keep.sum() >= 3 and embedding_map != "none":
            run.log_figure(plot_embedding_map(emb[keep], y_true[keep], classes, method=embedding_map, ontology=ontology,
                                              title=f"{label} embeddings, {ds.name} ({fold_txt})"),
                           "plots/embedding_map.png")
        metrics["run_id"] = run.run_id
    if version:  # a limited evaluation is tagged too, under its own key (…test0-n200) so it never
        # passes for the full fold
        _tag_version(version, ds, metrics, fold_txt if limit is None else f"{fold_txt}-n{limit}")
    return metrics


def _trust_report(model, preds: pd.DataFrame, metrics: dict, y_true_raw, y_true, keep, cmap, emap, ext,
                  title: str) -> dict:
    """Adds the trust layer's metrics (zoo.evaluate.trust) to ``metrics`` when the model carries
    one: in the model's classes the full set (coverage and set size at 90/95 % overall and per
    class, macro-F and MCS of both decision rules, share referred); on a dataset with other classes
    coverage and set size of the translated sets. Returns the figures to log."""
    from zoo.evaluate.trust import mapped_set_metrics, trust_metrics

    try:
        trust = model.unwrap_python_model().model.trust
    except AttributeError:  # not a zoo pyfunc
        trust = None
    if trust is None:
        return {}
    probs = preds[[f"p_{c}" for c in trust.classes]].to_numpy(dtype=float)
    if emap is None and (cmap is None or cmap.direction == "dataset_to_model"):
        own = preds["label"].astype(str).to_numpy() if trust.settings["decision"] == "argmax" else None
        found, figures = trust_metrics(probs[keep], y_true[keep], trust, default_pred=None if own is None else own[keep],
                                       title=title)
        metrics.update(found)
        return figures
    if emap is not None:
        rows, translate = ~ext.ignored, emap.translate
    else:
        rows, translate = keep, (lambda c: cmap.mapping.get(c, c))
    metrics.update(mapped_set_metrics(probs[rows], y_true_raw[rows], trust, translate))
    return {}


def _tolerance_ontology(ontology, classes: list[str]):
    """The ontology when it knows every class (tolerant scores), else None."""
    try:
        for c in classes:
            ontology.is_tolerable(c, c)
        return ontology
    except Exception:
        return None


def _map_name(cmap) -> str | None:
    """The class map's file stem for run names (``pbc_to_zheng``), None without a map."""
    source = getattr(cmap, "source", None) if cmap else None
    return Path(str(source)).stem if source and source != "none" else None


def _log_table(run, table: pd.DataFrame, name: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        table.to_csv(path, index=False)
        run.log_artifact(path)


def _tag_version(version: Mapping[str, str], ds, metrics: Mapping[str, Any], fold_txt: str) -> None:
    """Leave the evaluation on the model version too (``eval.<dataset>.<fold>.macro_f1``…), so the
    registry shows how a version fares on external data without opening runs."""
    from mlflow.tracking import MlflowClient

    from zoo.tracking.runs import dataset_digest

    client = MlflowClient()
    prefix = f"eval.{ds.name}.{fold_txt}"
    values = {f"{prefix}.macro_f1": metrics.get("macro_f1"), f"{prefix}.mcs": metrics.get("mcs"),
              f"{prefix}.dataset_digest": dataset_digest(ds), f"{prefix}.run_id": metrics.get("run_id")}
    for key, value in values.items():
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            continue
        client.set_model_version_tag(version["model_name"], version["model_version"], key, str(value))
