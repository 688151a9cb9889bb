"""Model kind ``reference``: adaptive reference cells (``003_*.txt``) for any input cell.

``predict(images, k=8, method="mse")`` returns per image
``label`` (kNN vote of the references), ``confidence`` (the vote's share), ``references`` (bank ids:
manifest image paths), ``reference_labels``, ``distances`` (MSE in the reduced space) and
``label_distribution`` (label shares among the nearest 100, a soft second opinion). List and dict
columns are JSON strings (MLflow column types are scalars): ``json.loads(row.references)``.

The whole system travels as data: the feature network (safetensors + a recipe naming one of three
known builders — zoo Encoder, zoo Classifier, bare timm network), the reducer (safetensors or npz
+ JSON), the bank (npz with ``allow_pickle=False`` + JSON) and its SOM (npz + JSON).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from torch import nn

from zoo.models.zoo_model import ZOO_MODELS, BadImageError, ZooModel, to_images

NETWORK_FILE = "network.safetensors"
REDUCER_DIR = "reducer"
BANK_DIR = "bank"
METHODS = ("mse", "som")


def network_recipe(module: nn.Module) -> dict[str, Any]:
    """How to rebuild ``module``'s architecture (its weights travel separately)."""
    from zoo.models.classifier import Classifier
    from zoo.models.encoder import Encoder

    if isinstance(module, Encoder):
        return {"type": "encoder", "config": dict(module.config)}
    if isinstance(module, Classifier):
        return {"type": "classifier", "config": dict(module.config)}
    arch = (getattr(module, "pretrained_cfg", None) or {}).get("architecture")
    if arch:
        return {"type": "timm", "arch": str(arch), "num_classes": int(getattr(module, "num_classes", 0) or 0)}
    raise TypeError(f"cannot package a {type(module).__name__} as a reference model's feature network: "
                    f"use a zoo Encoder, a zoo Classifier or a timm network")


def build_network(recipe: Mapping[str, Any]) -> nn.Module:
    kind = recipe.get("type")
    if kind == "encoder":
        from zoo.models.encoder import Encoder

        return Encoder.from_config(dict(recipe["config"]))
    if kind == "classifier":
        from zoo.models.classifier import Classifier

        return Classifier.from_config(dict(recipe["config"]))
    if kind == "timm":
        import timm

        return timm.create_model(str(recipe["arch"]), pretrained=False, num_classes=int(recipe.get("num_classes", 0)))
    raise ValueError(f"unknown feature-network type {kind!r}; known: encoder, classifier, timm")


@ZOO_MODELS.register("reference")
class ReferenceModel(ZooModel):
    """Feature network at ``layer`` -> reducer -> reference bank (+ SOM); see the module docstring."""

    kind = "reference"

    def __init__(self, family: str, network: nn.Module, layer: str, reducer, bank, *, img_size: int,
                 k: int = 8, method: str = "mse", n_distribution: int = 100, config: Mapping | None = None,
                 training: Mapping | None = None, meta: Mapping | None = None, device: str = "cpu",
                 recipe: Mapping[str, Any] | None = None):
        super().__init__(family=family, classes=bank.classes, img_size=img_size, config=config, training=training,
                         meta=meta)
        from zoo.reference.features import FeatureExtractor

        if method not in METHODS:
            raise ValueError(f"unknown reference method {method!r}; valid: {', '.join(METHODS)}")
        self.network = network.eval()
        self.recipe = dict(recipe) if recipe is not None else network_recipe(network)
        self.layer = layer
        self.reducer = reducer
        self.bank = bank
        self.k, self.method, self.n_distribution = int(k), method, int(n_distribution)
        self.device = device
        self.extractor = FeatureExtractor(self.network, layer=layer, img_size=img_size, device=device, progress=False)

    def output_schema(self) -> list[tuple[str, str]]:
        return [("label", "string"), ("confidence", "double"), ("references", "string"),
                ("reference_labels", "string"), ("distances", "string"), ("label_distribution", "string")]

    def params_schema(self) -> list[tuple[str, str, Any]]:
        return [("k", "long", self.k), ("method", "string", self.method)]

    def embed(self, images) -> np.ndarray:
        """Reduced vectors of a batch of images (the space references are searched in)."""
        from zoo.data.images import decode_image

        items = to_images(images)
        pil = []
        for i, item in enumerate(items):
            try:
                pil.append(decode_image(item))
            except Exception as exc:
                raise BadImageError(f"row {i}: cannot decode image: {exc}") from exc
        return self._reduce(pil)

    def _reduce(self, pil: list) -> np.ndarray:
        if not pil:
            return np.zeros((0, self.bank.vectors.shape[1]), dtype=np.float32)
        return self.reducer.transform(self.extractor(pil))

    def predict(self, images, k: int | None = None, method: str | None = None, **params: Any) -> pd.DataFrame:
        import imagehash

        from zoo.data.images import decode_image

        if params:
            raise ValueError(f"unknown predict parameter(s) {sorted(params)}; this model takes k and method")
        k = self.k if k is None else int(k)
        if k < 1:
            raise ValueError(f"k must be >= 1 (references per image), got {k}")
        method = method or self.method
        items = to_images(images)
        pil = []
        for i, item in enumerate(items):
            if item is None or (isinstance(item, float) and np.isnan(item)):
                raise BadImageError(f"row {i}: no image (empty value)")
            try:
                pil.append(decode_image(item))
            except Exception as exc:
                raise BadImageError(f"row {i}: cannot decode image: {exc}") from exc
        if not pil:
            return self.empty()
        hashes = [str(imagehash.average_hash(img)) for img in pil]
        vectors = self._reduce(pil)
        res = self.bank.query(vectors, ahashes=hashes, k=k, method=method)
        labels, conf = self.bank.vote(res)
        dist = self.bank.label_distribution(vectors, ahashes=hashes, n=self.n_distribution)
        refs, ref_labels, dists = [], [], []
        for row, d in zip(res.indices, res.distances):
            ok = row >= 0
            refs.append(json.dumps(self.bank.ids[row[ok]].tolist()))
            ref_labels.append(json.dumps(self.bank.labels[row[ok]].tolist()))
            dists.append(json.dumps([round(float(v), 6) for v in d[ok]]))
        return pd.DataFrame({"label": pd.Series(labels, dtype=object), "confidence": conf.astype(np.float64),
                             "references": refs, "reference_labels": ref_labels, "distances": dists,
                             "label_distribution": [json.dumps(x) for x in dist]})

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "network": self.recipe, "layer": self.layer, "k": self.k,
                "method": self.method, "n_distribution": self.n_distribution}

    def save_files(self, directory: Path) -> dict[str, Any]:
        from safetensors.torch import save_model

        directory = Path(directory)
        save_model(self.network.cpu(), str(directory / NETWORK_FILE), metadata={"format": "pt"})
        self.network.to(self.extractor.device)
        self.reducer.save(directory / REDUCER_DIR)
        self.bank.save(directory / BANK_DIR)
        return {"network": NETWORK_FILE, "reducer": REDUCER_DIR, "bank": BANK_DIR}

    @classmethod
    def load_files(cls, directory: Path, meta: Mapping[str, Any], device: str) -> "ReferenceModel":
        from safetensors.torch import load_model

        from zoo.reference.bank import ReferenceBank
        from zoo.reference.reducers import load_reducer

        directory = Path(directory)
        network = build_network(meta["network"])
        load_model(network, str(directory / NETWORK_FILE), strict=True)
        return cls(meta["family"], network, meta["layer"], load_reducer(directory / REDUCER_DIR, device=device),
                   ReferenceBank.load(directory / BANK_DIR, device=device), img_size=int(meta["img_size"]),
                   k=int(meta.get("k", 8)), method=meta.get("method", "mse"),
                   n_distribution=int(meta.get("n_distribution", 100)), config=meta.get("config"),
                   training=meta.get("training"), meta=meta, device=device, recipe=meta["network"])


__all__ = ["ReferenceModel", "build_network", "network_recipe"]
