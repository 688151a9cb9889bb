"""Kind ``embedding_svm``: an image encoder whose embeddings feed the RBF-SVM stage (TML, guided,
SMR…), as a folder of data:

```
zoo_model.json        kind, family, classes, img_size, preprocessing, training, config, encoder
                      config, extras names (see zoo.models.zoo_model)
encoder.safetensors   encoder weights (a safetensors state dict, never a pickled module)
svm.skops             the fitted SVMStage (skops.io, trusted types of zoo.models.safe_io)
knowledge/            the ontology and matrices the model was trained with
<extras files>        whatever the extras save (e.g. guide.csv, guide_projector.npz)
```

``represent`` says what the SVM (and the extras) read: ``embedding``, the encoder's output (the
papers'), or ``features``, the backbone's pooled features before the encoder's head (the
``svm_input`` parameter of the embedding families); ``zoo_model.json`` records it.

``predict(images)`` gives ``label`` (the SVM's decision), ``confidence`` (its calibrated
probability), one ``p_<class>`` per class, the extras' columns and, with
``return_embedding=True``, ``embedding``. Images are decoded with ``zoo.data.images.decode_image``
and preprocessed with ``zoo.data.transforms.eval_transform`` — the evaluation path of training.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from zoo.models.safe_io import dump_estimator, load_estimator
from zoo.models.zoo_model import (MODEL_EXTRAS, ZOO_MODELS, ModelExtras, UnsafeArtifactError, ZooModel,
                                  decode_batch, to_images)

ENCODER_FILE = "encoder.safetensors"
SVM_FILE = "svm.skops"
REPRESENTATIONS = ("embedding", "features")
KNOWLEDGE_DIR = "knowledge"


@ZOO_MODELS.register("embedding_svm")
class EmbeddingSVMModel(ZooModel):
    """Encoder + fitted SVM stage + class list + preprocessing (+ family extras)."""

    kind = "embedding_svm"

    def __init__(self, family: str, encoder, svm, classes: Sequence[str], *, img_size: int,
                 extras: Mapping[str, ModelExtras] | None = None, config: Mapping[str, Any] | None = None,
                 device: str = "cpu", knowledge_dir: Path | None = None, meta: Mapping[str, Any] | None = None,
                 training: Mapping[str, Any] | None = None, represent: str = "embedding"):
        if not classes:
            raise ValueError("an embedding model needs its class list (canonical ids, in order)")
        super().__init__(family=family, classes=classes, img_size=img_size, config=config, training=training,
                         meta=meta)
        if represent not in REPRESENTATIONS:
            raise ValueError(f"represent must be one of {', '.join(REPRESENTATIONS)}, got {represent!r}")
        if represent == "features" and not callable(getattr(encoder, "features", None)):
            raise TypeError(f"represent='features' needs an encoder with features(x); {type(encoder).__name__} has none")
        self.represent = represent
        self.encoder = encoder
        self.svm = svm
        self.extras = dict(extras or {})
        for name, extra in self.extras.items():
            if not isinstance(extra, ModelExtras):
                raise TypeError(f"extras[{name!r}] must be a ModelExtras, got {type(extra).__name__}")
        self.knowledge_dir = knowledge_dir
        from zoo.train.device import resolve_device

        self.device = str(resolve_device(device))
        self._proba_index = self._svm_column_index()
        self._class_lookup = {_key(c): int(i) for c, i in zip(self.svm.classes_, self._proba_index)}
        self.encoder.to(self.device)
        self.encoder.eval()

    def _svm_column_index(self) -> np.ndarray:
        """Position in ``self.classes`` of each column of ``svm.predict_proba`` (the SVM may have
        been fitted on class indices or on class names, and on a subset of the classes)."""
        fitted = getattr(self.svm, "classes_", None)
        if fitted is None:
            raise ValueError("the SVM stage is not fitted (no classes_); fit it before building the model")
        index = []
        for c in list(fitted):
            if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
                if not 0 <= int(c) < len(self.classes):
                    raise ValueError(f"SVM class index {c} outside the {len(self.classes)} model classes")
                index.append(int(c))
            elif str(c) in self.classes:
                index.append(self.classes.index(str(c)))
            else:
                raise ValueError(f"SVM class {c!r} is not among the model classes {self.classes}")
        return np.asarray(index, dtype=int)

    # -- schema -----------------------------------------------------------------------------------
    def output_schema(self) -> list[tuple[str, str]]:
        cols = [("label", "string"), ("confidence", "double"), *((f"p_{c}", "double") for c in self.classes)]
        for extra in self.extras.values():
            cols += list(extra.output_schema())
        return cols

    def params_schema(self) -> list[tuple[str, str, Any]]:
        return [("return_embedding", "boolean", False)]

    # -- inference --------------------------------------------------------------------------------
    def embed(self, images, batch_size: int = 64) -> np.ndarray:
        """(N, D) float32 representations the SVM reads (``represent``: the encoder's embeddings or its
        backbone features) of ``images`` (PIL images, an (N, H, W, 3) uint8 array, or anything
        ``decode_image`` reads: paths, bytes, base64 strings)."""
        import torch
        from tqdm.auto import tqdm

        items = to_images(images)
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(items)
        if n == 0:
            dim = "num_features" if self.represent == "features" else "embedding_dim"
            return np.zeros((0, int(getattr(self.encoder, dim, 0) or 0)), dtype=np.float32)
        out = []
        starts = range(0, n, batch_size)
        with torch.inference_mode():
            for start in tqdm(starts, desc="predict", unit="batch", disable=None if len(starts) > 4 else True):
                x = decode_batch(items[start : start + batch_size], self.transform, start)
                x = x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                z = self.encoder.features(x) if self.represent == "features" else self.encoder(x)
                out.append(z.float().cpu().numpy())
        return np.concatenate(out)

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, C) class probabilities in ``self.classes`` order (0 for classes the SVM never saw)."""
        probs = np.zeros((len(embeddings), len(self.classes)), dtype=np.float64)
        if len(embeddings):
            probs[:, self._proba_index] = self.svm.predict_proba(embeddings)
        return probs

    def decide(self, embeddings: np.ndarray) -> np.ndarray:
        """Index into ``self.classes`` of the SVM stage's decision — the decision training's test
        metrics were computed from."""
        if not len(embeddings):
            return np.zeros(0, dtype=int)
        lookup = self._class_lookup
        return np.asarray([lookup[_key(c)] for c in self.svm.predict(embeddings)], dtype=int)

    def predict(self, images, return_embedding: bool = False, batch_size: int = 64, **params: Any) -> pd.DataFrame:
        if params:
            raise ValueError(f"unknown predict parameter(s) {sorted(params)}; this model takes "
                             f"{[p[0] for p in self.params_schema()]} (and batch_size)")
        emb = self.embed(images, batch_size=batch_size)
        if len(emb) == 0:
            out = self.empty()
            if return_embedding:
                out["embedding"] = pd.Series([], dtype=object)
            return out
        probs = self.probabilities(emb)
        best = self.decide(emb)
        cols: dict[str, Any] = {"label": np.asarray(self.classes, dtype=object)[best],
                                "confidence": probs[np.arange(len(best)), best]}
        for j, c in enumerate(self.classes):
            cols[f"p_{c}"] = probs[:, j]
        for name, extra in self.extras.items():
            # Extras that describe the decided class (SMR's lineage/maturity) get the SVM's decision.
            decided = {"labels": cols["label"]} if getattr(extra, "wants_labels", False) else {}
            for col, values in extra.columns(emb, probs, **decided).items():
                values = np.asarray(values) if not isinstance(values, list) else values
                if len(values) != len(emb):
                    raise ValueError(f"extras {name!r} column {col!r} has {len(values)} values for {len(emb)} rows")
                cols[col] = list(values.tolist()) if isinstance(values, np.ndarray) and values.ndim > 1 else values
        if return_embedding:
            cols["embedding"] = [row.tolist() for row in emb]
        return pd.DataFrame(cols)

    # -- persistence ------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "encoder": dict(self.encoder.config), "represent": self.represent,
                "extras": {name: extra.config() for name, extra in self.extras.items()}}

    def save_files(self, directory: Path) -> dict[str, Any]:
        from safetensors.torch import save_model

        save_model(self.encoder, str(directory / ENCODER_FILE), metadata={"format": "pt"})
        dump_estimator(self.svm, directory / SVM_FILE)
        knowledge = directory / KNOWLEDGE_DIR
        knowledge.mkdir(exist_ok=True)
        for path in _knowledge_files(self.knowledge_dir):
            if path.resolve() != (knowledge / path.name).resolve():
                shutil.copy2(path, knowledge / path.name)
        for extra in self.extras.values():
            extra.save(directory)
        return {"encoder": ENCODER_FILE, "svm": SVM_FILE, "knowledge": KNOWLEDGE_DIR}

    @classmethod
    def load_files(cls, directory: Path, meta: Mapping[str, Any], device: str) -> "EmbeddingSVMModel":
        from safetensors.torch import load_model

        from zoo.models.encoder import Encoder

        encoder = Encoder.from_config(dict(meta["encoder"]))
        load_model(encoder, str(directory / ENCODER_FILE), strict=True)
        svm = load_estimator(directory / SVM_FILE)
        extras = {}
        for name in (meta.get("extras") or {}):
            if name not in MODEL_EXTRAS:
                raise UnsafeArtifactError(f"{directory} uses model extras {name!r}, which this zoo does not "
                                          f"know; known extras: {', '.join(MODEL_EXTRAS.names()) or 'none'}")
            extras[name] = MODEL_EXTRAS.get(name).load(directory)
        knowledge = directory / KNOWLEDGE_DIR
        return cls(meta["family"], encoder, svm, meta["classes"], img_size=int(meta["img_size"]), extras=extras,
                   config=meta.get("config"), device=device, knowledge_dir=knowledge if knowledge.is_dir() else None,
                   meta=meta, training=meta.get("training"),
                   # Models saved before the option existed fed the SVM the encoder's embeddings.
                   represent=str(meta.get("represent", "embedding")))

    def __repr__(self) -> str:
        return (f"EmbeddingSVMModel(family={self.family!r}, classes={len(self.classes)}, img_size={self.img_size}, "
                f"encoder={self.encoder.config.get('backbone')!r}, device={self.device!r}, "
                f"extras={list(self.extras)})")


def _key(c: Any) -> Any:
    """Hashable, type-normalised key of an SVM class (numpy ints/strings -> Python)."""
    return int(c) if isinstance(c, (int, np.integer)) and not isinstance(c, bool) else str(c)


def _knowledge_files(source: Path | None) -> list[Path]:
    """The knowledge a model carries: the folder it was loaded with, else the packaged one."""
    if source is not None and Path(source).is_dir():
        return sorted(p for p in Path(source).iterdir() if p.is_file())
    from zoo.knowledge import knowledge_files

    return knowledge_files()
