"""The ``reference`` family: adaptive reference cells (seed ``003``, Xception -> VAE -> SOM).

One fold: features of every image from ``source_model`` at ``layer`` (cached on disk) -> a
reducer fitted on the training features (``vae``: latent 50, the mean as the vector; or ``pca``,
whose explained-variance share is logged) -> a batch SOM on the training vectors -> the bank: the
deduplicated training cells. Validation and test cells are the queries (the thesis's testSOM):
their 8 references, the kNN vote, ROTMES, SOM errors, and the explorer page
(``family/explorer.html``: U-matrix, class overlays, misclassified cells, click a node, 3x3 view).

``source_model``: ``models:/<name>/<version>`` (any registered zoo encoder or classifier), a saved
zoo model folder, ``timm:<arch>``, or ``none`` = the common ``backbone`` as a timm network with
random init (or the common ``pretrained`` local checkpoint) — the tiny configuration needs no
other model. The common ``epochs``/``lr``/``batch_size`` train the VAE.

Primary metric: ``precision_at_8`` — the share of the 8 references shown that carry the query's
label, i.e. what the expert actually sees (the thesis's goal: visually similar cells *of the right
class*). The kNN vote's ``macro_f1`` (and MCS) are logged too, but they reward the majority of 8
only, not the quality of each reference shown.

```bash
zoo train reference --source_model models:/zoo-tml/1 --reducer vae --latent 50
mlflow run . -e reference -P source_model=none -P reducer=pca --env-manager local
```
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Sequence

import numpy as np

from zoo.families import FAMILIES
from zoo.families.base import Family, FoldContext, FoldOutcome
from zoo.families.params import Param

K = 8               # references per query (the thesis's 3x3 grid)
N_DISTRIBUTION = 100
MAX_AUTO_SIDE = 60  # auto SOM side = sqrt(N) (one node per cell, as the thesis) capped for CPU

REFERENCE_PARAMS: tuple[Param, ...] = (
    Param("source_model", str, "none", "feature source: models:/<name>/<version>, a saved zoo model folder, "
                                       "timm:<arch>, or none (= the backbone with random init / pretrained)"),
    Param("layer", str, "pre_logits", "pre_logits (timm pooled), features (timm forward_features, flattened), "
                                      "output, or a module name (forward hook, flattened)"),
    Param("reducer", str, "vae", "reduction of the features", choices=("vae", "pca")),
    Param("latent", int, 50, "reduced dimensions (the thesis's L = 50)", low=2),
    Param("som_size", int, 0, "side of the square SOM; 0 = sqrt(bank size), capped at 60 (thesis: 248)", low=0),
    Param("som_epochs", int, 20, "batch-SOM epochs (passes over the bank)", low=1),
    Param("sigma", float, 0.0, "initial neighbourhood radius in nodes; 0 = half the side (Kohonen)", low=0.0),
    Param("som_lr", float, 1.0, "batch-SOM learning rate (1 = Kohonen's batch rule)", low=0.0, high=1.0,
          open_low=True),
    Param("method", str, "mse", "how references are chosen: mse (nearest in the reduced space) or som "
                                "(node, then nearest nodes)", choices=("mse", "som")),
    Param("rotmes_per_class", int, 20, "images per class for ROTMES (thesis: 100)", low=1),
    Param("explorer_cells", int, 1500, "bank cells drawn on the explorer page (plus the queries' references)",
          low=0),
)


@FAMILIES.register("reference")
class ReferenceFamily(Family):
    name = "reference"
    kind: ClassVar[str] = "reference"
    params: ClassVar[Any] = REFERENCE_PARAMS
    primary_metric: ClassVar[str] = "precision_at_8"
    direction: ClassVar[str] = "maximize"
    has_classes: ClassVar[bool] = True
    # No Trainer: features are extracted once (fp32, cached on disk), then a reducer and a SOM fit on
    # them in seconds to minutes. There is no epoch loop over images for a budget, `precision` or
    # `val_every` to act on; a budget is refused (Family.__init__), the other two do not apply.
    takes_budget: ClassVar[bool] = False
    # The contract test's tiny set: timm's smallest test network, PCA, a 3x3 map.
    contract_params: ClassVar[dict[str, str]] = {"source_model": "timm:test_resnet", "reducer": "pca",
                                                 "latent": "4", "som_size": "3", "som_epochs": "3",
                                                 "rotmes_per_class": "2", "explorer_cells": "30"}

    def source(self) -> str:
        src = str(self.params["source_model"]).strip()
        return f"timm:{self.cfg.backbone}" if src.lower() in ("", "none") else src

    def tags(self) -> dict[str, str]:
        p = self.params
        return {"source_model": self.source(), "layer": p["layer"], "reducer": p["reducer"],
                "latent": str(p["latent"]), "method": p["method"]}

    def name_parts(self) -> list[str]:
        src = self.source()
        short = src.split("/")[-2] + "-v" + src.split("/")[-1] if src.startswith("models:/") else src.split(":")[-1]
        return [short, self.params["reducer"], str(self.params["latent"])]

    def search_space(self, trial) -> dict[str, Any]:
        decl = {p.name: p for p in REFERENCE_PARAMS}
        return {"reducer": decl["reducer"].suggest(trial),
                "latent": decl["latent"].suggest(trial, low=8, high=128),
                "method": decl["method"].suggest(trial)}

    def output_columns(self, classes: Sequence[str]) -> list[str]:
        return ["label", "confidence", "references", "reference_labels", "distances", "label_distribution"]

    # -- one fold ---------------------------------------------------------------------------------
    def fit_fold(self, ctx: FoldContext) -> FoldOutcome:
        from zoo.reference import FeatureCache, FeatureExtractor, ReferenceBank, create_reducer, resolve_source
        from zoo.som import BatchSOM
        from zoo.train import seed_everything

        cfg, p = self.cfg, self.params
        seed_everything(cfg.seed)
        src = resolve_source(self.source(), device=cfg.device, img_size=cfg.img_size, pretrained=cfg.pretrained,
                             seed=cfg.seed)
        extractor = FeatureExtractor(src.module, layer=p["layer"], img_size=src.img_size, batch_size=cfg.batch_size,
                                     device=cfg.device, progress=ctx.progress)
        cache = FeatureCache()
        parts = {k: df for k, df in ctx.split.items() if len(df)}

        def features(df):
            ids = df["image"].astype(str).tolist()
            key = cache.key(src.key, p["layer"], src.img_size, ctx.dataset.digest, ids)
            return cache.get_or_compute(key, ids, lambda: extractor(ctx.dataset.image_paths(df)))

        feats = {k: features(df) for k, df in parts.items()}
        kw = ({"epochs": cfg.epochs, "lr": cfg.lr, "batch_size": cfg.batch_size, "device": cfg.device,
               "random_state": cfg.seed, "verbose": ctx.progress} if p["reducer"] == "vae" else {"random_state": cfg.seed})
        reducer = create_reducer(p["reducer"], latent=p["latent"], **kw).fit(feats["train"])
        vec = {k: reducer.transform(f) for k, f in feats.items()}

        train = parts["train"]
        side = p["som_size"] or min(MAX_AUTO_SIDE, max(2, round(math.sqrt(len(train)))))
        som = BatchSOM(side, side, epochs=p["som_epochs"], sigma=p["sigma"] or None, learning_rate=p["som_lr"],
                       init="pca" if vec["train"].shape[1] >= 2 else "random", device=cfg.device,
                       random_state=cfg.seed, verbose=ctx.progress).fit(vec["train"])
        ids = train["image"].astype(str).tolist()
        bank = ReferenceBank.build(vec["train"], train["label"].astype(str).tolist(), ids,
                                   ahash=train["ahash"].astype(str).tolist(), paths=ids, som=som)

        logged: dict[str, float] = {"bank_size": float(len(bank)), "bank_dropped_duplicates": float(len(train) - len(bank)),
                                    "som_side": float(side), "som_qe_train": som.quantization_error(vec["train"]),
                                    "som_te_train": som.topographic_error(vec["train"]),
                                    "feature_dim": float(feats["train"].shape[1])}
        logged.update({f"reducer_{k}": float(v) for k, v in reducer.summary().items()})
        metrics: dict[str, float] = {}
        results = {}
        for part in ("val", "test"):
            if part in parts:
                m, res = self._evaluate(ctx, bank, vec[part], parts[part], prefix=f"{part}_")
                metrics.update(m)
                results[part] = res
        query_part = "test" if "test" in parts else "val"
        if query_part in parts:
            metrics.update(self._rotmes(ctx, extractor, reducer, parts[query_part], prefix=f"{query_part}_"))
        ctx.run.log_metrics({**logged, **{k: v for k, v in metrics.items() if not k.startswith("test_")}})
        ctx.run.log_metrics_json({"metrics": metrics, "summary": logged,
                                  "reducer_history": getattr(reducer, "history_", np.zeros(0)).tolist()},
                                 "reference_metrics.json")
        if query_part in parts:
            self._figures_and_explorer(ctx, bank, vec[query_part], parts[query_part], results[query_part], metrics)

        model = None
        if ctx.options.get("log_model", True):
            from zoo.models.reference import ReferenceModel

            model = ReferenceModel(cfg.family, src.module.cpu(), p["layer"], reducer, bank, img_size=src.img_size,
                                   k=K, method=p["method"], n_distribution=N_DISTRIBUTION,
                                   config={**cfg.to_dict(), **p, "source_model": self.source(), "fold": ctx.fold,
                                           "source_key": src.key},
                                   training=ctx.options.get("training"), device="cpu")
        epochs = len(getattr(reducer, "history_", ())) or 1
        history = [{"epoch": i + 1, "vae_loss": float(v)} for i, v in enumerate(getattr(reducer, "history_", ()))]
        metrics["best_epoch"] = float(epochs)
        test_index = parts["test"]["image"].astype(str).tolist() if "test" in parts else []
        return FoldOutcome(model, metrics, epochs, epochs, history, test_index)

    # -- pieces ------------------------------------------------------------------------------------
    def _evaluate(self, ctx: FoldContext, bank, vectors: np.ndarray, df, prefix: str):
        from zoo.evaluate.metrics import classification_metrics, scalar_metrics
        from zoo.reference.metrics import precision_at_k

        y = df["label"].astype(str).tolist()
        hashes, ids = df["ahash"].astype(str).tolist(), df["image"].astype(str).tolist()
        out: dict[str, float] = {}
        chosen = None
        for method in ("mse", "som"):
            res = bank.query(vectors, ahashes=hashes, ids=ids, k=K, method=method)
            ref_labels = np.where(res.indices >= 0, bank.labels[np.maximum(res.indices, 0)], None)
            out[f"{prefix}precision_at_{K}_{method}"] = precision_at_k(ref_labels, y)
            if method == self.params["method"]:
                chosen = res
                out[f"{prefix}precision_at_{K}"] = out[f"{prefix}precision_at_{K}_{method}"]
        pred, conf = bank.vote(chosen)
        pred = [p if p is not None else bank.labels[0] for p in pred]
        cm = classification_metrics(y, pred, ctx.classes, severity=ctx.severity, ontology=ctx.ontology)
        scal = scalar_metrics(cm, prefix)
        scal.pop(f"{prefix}n", None)
        out.update(scal)
        out[f"{prefix}som_qe"] = bank.som.quantization_error(vectors)
        out[f"{prefix}som_te"] = bank.som.topographic_error(vectors)
        return out, {"result": chosen, "pred": pred}

    def _rotmes(self, ctx: FoldContext, extractor, reducer, df, prefix: str) -> dict[str, float]:
        from zoo.data.images import decode_image
        from zoo.reference.metrics import rotmes

        size = extractor.img_size
        labels = df["label"].astype(str).to_numpy()
        rng = np.random.default_rng(self.cfg.seed)
        keep = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:self.params["rotmes_per_class"]]
                               for c in np.unique(labels)])
        paths = ctx.dataset.image_paths(df.iloc[np.sort(keep)])
        imgs = np.stack([np.asarray(decode_image(pth).resize((size, size))) for pth in paths])
        out = rotmes(lambda x: reducer.transform(extractor(list(x))), imgs, labels[np.sort(keep)],
                     per_class=self.params["rotmes_per_class"], seed=self.cfg.seed)
        ctx.run.log_metrics_json(out, f"rotmes_{prefix.rstrip('_')}.json")
        return {f"{prefix}rotmes": out["rotmes"]}

    def _figures_and_explorer(self, ctx: FoldContext, bank, vectors, df, res, metrics) -> None:
        from zoo.reference.explorer import build_explorer, thumbnail_data_uri
        from zoo.som.plots import plot_hit_maps, plot_umatrix

        som = bank.som
        y = df["label"].astype(str).to_numpy()
        pred = np.asarray(res["pred"], dtype=object)
        title = " ".join([self.cfg.family, *self.name_parts(), self.cfg.dataset, f"fold {ctx.fold}"])
        coords = som.bmu_coords(vectors)
        ctx.run.log_figure(plot_umatrix(som.umatrix(), coords, y, classes=ctx.classes, wrong=pred != y,
                                        title=f"{title} — U-matrix, query cells (red: kNN vote wrong)"),
                           "plots/som_umatrix.png")
        ctx.run.log_figure(plot_hit_maps(som.hit_map(bank.vectors, bank.labels, classes=bank.classes), bank.classes,
                                         umatrix=som.umatrix()), "plots/som_hits.png")
        # the page: a sample of bank cells, all query cells (capped) and every reference they show
        rng = np.random.default_rng(self.cfg.seed)
        n_bank = min(len(bank), self.params["explorer_cells"])
        n_query = min(len(df), max(1, self.params["explorer_cells"] // 4))
        q_rows = np.sort(rng.permutation(len(df))[:n_query])
        shown = set(rng.permutation(len(bank))[:n_bank].tolist())
        refs_idx = res["result"].indices
        for r in q_rows:
            shown.update(int(i) for i in refs_idx[r] if i >= 0)
        q_nodes = som.predict(vectors[q_rows]) if len(q_rows) else np.zeros(0, np.int64)
        q_paths = ctx.dataset.image_paths(df.iloc[q_rows])
        from zoo.data.manifest import resolve_path

        cells = []
        for i in sorted(shown):
            cells.append({"id": bank.ids[i], "label": bank.labels[i], "node": int(bank.node[i]), "split": "bank",
                          "thumb": thumbnail_data_uri(resolve_path(bank.paths[i], ctx.dataset.root, ctx.dataset.path))})
        references = {}
        for j, r in enumerate(q_rows):
            qid = f"query:{df['image'].iloc[r]}"
            cells.append({"id": qid, "label": y[r], "pred": pred[r], "node": int(q_nodes[j]), "split": "query",
                          "thumb": thumbnail_data_uri(q_paths[j])})
            references[qid] = [bank.ids[i] for i in refs_idx[r] if i >= 0]
        summary = {k: v for k, v in metrics.items() if k.endswith(("precision_at_8", "macro_f1", "rotmes", "som_qe"))}
        build_explorer(ctx.out_dir / "explorer.html", som.umatrix(), cells, bank.classes, references,
                       title=f"{title} — reference explorer", summary=summary)


__all__ = ["REFERENCE_PARAMS", "ReferenceFamily"]
