"""A trained pipeline — encoder + SVM stage + everything needed to predict — as a folder:

```
encoder.safetensors   encoder weights (a safetensors state dict, never a pickled module)
pipeline.json         family, classes (canonical ids, in order), encoder config, preprocessing
                      {img_size, mean, std}, family config, extras, zoo version
svm.joblib            the fitted SVMStage
knowledge/            the ontology and matrices the model was trained with
<extras files>        whatever the family extras save (e.g. guide.csv)
```

``Pipeline.load(dir).predict(images)`` gives ``label``, ``confidence``, one ``p_<class>`` per
class, the family extras' columns, and ``embedding`` on request. Images are decoded with
``zoo.data.images.decode_image`` and preprocessed with ``zoo.data.transforms.eval_transform`` —
the evaluation path of training, so a served model sees exactly what the validation set saw.

Family extras are pluggable through :data:`PIPELINE_EXTRAS` (a registry keyed by name, usually the
family's): a :class:`PipelineExtras` subclass saves/loads its files and adds output columns.
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from zoo.registry import Registry

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
ENCODER_FILE = "encoder.safetensors"
SVM_FILE = "svm.joblib"
META_FILE = "pipeline.json"
KNOWLEDGE_DIR = "knowledge"


class PipelineExtras:
    """Family-specific additions to a pipeline. Subclass, register in :data:`PIPELINE_EXTRAS`::

        @PIPELINE_EXTRAS.register("guided")
        class GuideExtras(PipelineExtras):
            def __init__(self, guide: pd.DataFrame): self.guide = guide
            def save(self, directory): self.guide.to_csv(Path(directory) / "guide.csv")
            @classmethod
            def load(cls, directory): return cls(pd.read_csv(Path(directory) / "guide.csv", index_col=0))
            def columns(self, embeddings, probs): return {"guide_x": ..., "guide_y": ...}

    ``columns`` gets the (N, D) embeddings and the (N, C) class probabilities (columns in the
    pipeline's class order) and returns name -> array of length N (a 2-D array becomes a list per
    row). ``config()`` goes into pipeline.json for the record.
    """

    def save(self, directory: Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, directory: Path) -> "PipelineExtras":
        raise NotImplementedError

    def columns(self, embeddings: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {}


PIPELINE_EXTRAS: Registry = Registry("pipeline extras")


class BadImageError(ValueError):
    """An input row that cannot be turned into an image; names the row and the reason."""


def _normalize_stats(transform) -> tuple[list[float] | None, list[float] | None]:
    """mean/std of the Normalize step of a torchvision (v2) transform, for the record."""
    steps = getattr(transform, "transforms", [transform])
    for step in steps:
        if hasattr(step, "mean") and hasattr(step, "std"):
            return [float(v) for v in step.mean], [float(v) for v in step.std]
    return None, None


def _zoo_version() -> str:
    import zoo

    return getattr(zoo, "__version__", "unknown")


class Pipeline:
    """Encoder + fitted SVM stage + class list + preprocessing (+ family extras)."""

    def __init__(
        self,
        family: str,
        encoder,
        svm,
        classes: Sequence[str],
        *,
        img_size: int,
        extras: Mapping[str, PipelineExtras] | None = None,
        config: Mapping[str, Any] | None = None,
        device: str = "cpu",
        knowledge_dir: Path | None = None,
        meta: Mapping[str, Any] | None = None,
    ):
        if not classes:
            raise ValueError("a pipeline needs its class list (canonical ids, in order)")
        if len(set(classes)) != len(classes):
            raise ValueError(f"duplicate classes in {list(classes)}")
        self.family = str(family)
        self.encoder = encoder
        self.svm = svm
        self.classes = [str(c) for c in classes]
        self.img_size = int(img_size)
        self.extras = dict(extras or {})
        for name, extra in self.extras.items():
            if not isinstance(extra, PipelineExtras):
                raise TypeError(f"extras[{name!r}] must be a PipelineExtras, got {type(extra).__name__}")
        self.config = dict(config or {})
        self.knowledge_dir = knowledge_dir
        self.meta = dict(meta or {})
        from zoo.train.device import resolve_device

        self.device = str(resolve_device(device))
        self._transform = None
        self._proba_index = self._svm_column_index()
        self._class_lookup = {_key(c): int(i) for c, i in zip(self.svm.classes_, self._proba_index)}
        self.encoder.to(self.device)
        self.encoder.eval()

    # -- preprocessing ----------------------------------------------------------------------
    @property
    def transform(self):
        if self._transform is None:
            from zoo.data.transforms import eval_transform

            self._transform = eval_transform(self.img_size)
        return self._transform

    @property
    def preprocessing(self) -> dict[str, Any]:
        mean, std = _normalize_stats(self.transform)
        return {"img_size": self.img_size, "mean": mean, "std": std,
                "transform": "zoo.data.transforms.eval_transform"}

    def _svm_column_index(self) -> np.ndarray:
        """Position in ``self.classes`` of each column of ``svm.predict_proba`` (the SVM may have
        been fitted on class indices or on class names, and on a subset of the classes)."""
        fitted = getattr(self.svm, "classes_", None)
        if fitted is None:
            raise ValueError("the SVM stage is not fitted (no classes_); fit it before building a Pipeline")
        index = []
        for c in list(fitted):
            if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
                if not 0 <= int(c) < len(self.classes):
                    raise ValueError(f"SVM class index {c} outside the {len(self.classes)} pipeline classes")
                index.append(int(c))
            elif str(c) in self.classes:
                index.append(self.classes.index(str(c)))
            else:
                raise ValueError(f"SVM class {c!r} is not among the pipeline classes {self.classes}")
        return np.asarray(index, dtype=int)

    # -- inputs -----------------------------------------------------------------------------
    @staticmethod
    def check_batch(array: np.ndarray) -> np.ndarray:
        """An image batch must be (N, H, W, 3) uint8."""
        if array.dtype != np.uint8:
            raise ValueError(f"image batch must be uint8 (0-255), got dtype {array.dtype}; convert with "
                             "np.clip(x, 0, 255).astype(np.uint8) (scale floats in [0, 1] by 255 first)")
        if array.ndim != 4 or array.shape[-1] != 3:
            hint = " (one image? add a batch axis: x[None])" if array.ndim == 3 else ""
            raise ValueError(f"image batch must have shape (N, H, W, 3), got {array.shape}{hint}")
        return array

    def _decode(self, items: Sequence[Any], offset: int):
        """Decode and preprocess one batch; a bad item raises BadImageError naming its row."""
        import torch

        from zoo.data.images import decode_image

        tensors = []
        for i, item in enumerate(items):
            row = offset + i
            if item is None or item is pd.NA or (isinstance(item, float) and np.isnan(item)):
                raise BadImageError(f"row {row}: no image (empty value)")
            try:
                tensors.append(self.transform(decode_image(item)))
            except BadImageError:
                raise
            except Exception as exc:  # decode_image's own message says what is wrong
                raise BadImageError(f"row {row}: cannot decode image: {exc}") from exc
        return torch.stack(tensors)

    # -- inference --------------------------------------------------------------------------
    def embed(self, images, batch_size: int = 64) -> np.ndarray:
        """(N, D) float32 embeddings of ``images`` (PIL images, an (N, H, W, 3) uint8 array, or
        anything ``decode_image`` reads: paths, bytes, base64 strings)."""
        import torch
        from tqdm.auto import tqdm

        if isinstance(images, np.ndarray):
            self.check_batch(images)
        elif isinstance(images, (str, bytes)) or _is_pil(images):
            raise TypeError("predict takes a batch: wrap a single image in a list")
        items = images if isinstance(images, np.ndarray) else list(images)
        n = len(items)
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        dim = int(getattr(self.encoder, "embedding_dim", 0) or 0)
        if n == 0:
            return np.zeros((0, dim), dtype=np.float32)
        out = []
        starts = range(0, n, batch_size)
        with torch.inference_mode():
            for start in tqdm(starts, desc="predict", unit="batch", disable=None if len(starts) > 4 else True):
                x = self._decode(items[start : start + batch_size], start)
                x = x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                out.append(self.encoder(x).float().cpu().numpy())
        return np.concatenate(out)

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, C) class probabilities in ``self.classes`` order (0 for classes the SVM never saw)."""
        probs = np.zeros((len(embeddings), len(self.classes)), dtype=np.float64)
        if len(embeddings):
            probs[:, self._proba_index] = self.svm.predict_proba(embeddings)
        return probs

    def decide(self, embeddings: np.ndarray) -> np.ndarray:
        """Index into ``self.classes`` of the SVM stage's decision (``svm.predict``) — the same
        decision training's test metrics were computed from."""
        if not len(embeddings):
            return np.zeros(0, dtype=int)
        lookup = self._class_lookup
        return np.asarray([lookup[_key(c)] for c in self.svm.predict(embeddings)], dtype=int)

    def predict(self, images, return_embedding: bool = False, batch_size: int = 64) -> pd.DataFrame:
        """DataFrame with ``label`` (the SVM stage's decision), ``confidence`` (its calibrated
        probability), ``p_<class>`` per class, the extras' columns and, when
        ``return_embedding``, an ``embedding`` column (a list of floats per row)."""
        emb = self.embed(images, batch_size=batch_size)
        probs = self.probabilities(emb)
        best = self.decide(emb)
        cols: dict[str, Any] = {
            "label": np.asarray(self.classes, dtype=object)[best],
            "confidence": probs[np.arange(len(best)), best],
        }
        for j, c in enumerate(self.classes):
            cols[f"p_{c}"] = probs[:, j]
        for name, extra in self.extras.items():
            for col, values in extra.columns(emb, probs).items():
                values = np.asarray(values) if not isinstance(values, list) else values
                if len(values) != len(emb):
                    raise ValueError(f"extras {name!r} column {col!r} has {len(values)} values for {len(emb)} rows")
                cols[col] = list(values.tolist()) if isinstance(values, np.ndarray) and values.ndim > 1 else values
        if return_embedding:
            cols["embedding"] = [row.tolist() for row in emb]
        return pd.DataFrame(cols)

    # -- persistence ------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the pipeline folder (created; an existing pipeline there is replaced)."""
        import joblib
        from safetensors.torch import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_model(self.encoder, str(directory / ENCODER_FILE), metadata={"format": "pt"})
        joblib.dump(self.svm, directory / SVM_FILE)
        knowledge = directory / KNOWLEDGE_DIR
        knowledge.mkdir(exist_ok=True)
        for path in _knowledge_files(self.knowledge_dir):
            shutil.copy2(path, knowledge / path.name)
        extras_meta = {}
        for name, extra in self.extras.items():
            extra.save(directory)
            extras_meta[name] = {"module": type(extra).__module__, "config": extra.config()}
        meta = {
            "format_version": FORMAT_VERSION,
            "family": self.family,
            "classes": self.classes,
            "encoder": dict(self.encoder.config),
            "preprocessing": self.preprocessing,
            "config": self.config,
            "extras": extras_meta,
            "zoo_version": _zoo_version(),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        from zoo.tracking.runs import _jsonable

        (directory / META_FILE).write_text(json.dumps(_jsonable(meta), indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str = "auto") -> "Pipeline":
        import joblib
        from safetensors.torch import load_model

        from zoo.models import Encoder

        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(f"{directory} is not a zoo pipeline folder (no {META_FILE})")
        meta = json.loads(meta_path.read_text())
        if int(meta.get("format_version", 0)) > FORMAT_VERSION:
            raise ValueError(f"{directory} has pipeline format {meta['format_version']}; this zoo reads "
                             f"up to {FORMAT_VERSION}: upgrade marrow-zoo")
        encoder = Encoder.from_config(meta["encoder"])
        load_model(encoder, str(directory / ENCODER_FILE), strict=True)
        svm = joblib.load(directory / SVM_FILE)
        extras = {}
        for name, info in (meta.get("extras") or {}).items():
            if info.get("module") and name not in PIPELINE_EXTRAS:
                importlib.import_module(info["module"])  # registers the extras class
            extras[name] = PIPELINE_EXTRAS.get(name).load(directory)
        pre = meta.get("preprocessing", {})
        pipe = cls(meta["family"], encoder, svm, meta["classes"], img_size=pre["img_size"], extras=extras,
                   config=meta.get("config"), device=device,
                   knowledge_dir=directory / KNOWLEDGE_DIR if (directory / KNOWLEDGE_DIR).is_dir() else None,
                   meta=meta)
        now_mean, now_std = _normalize_stats(pipe.transform)
        if pre.get("mean") is not None and (now_mean != pre.get("mean") or now_std != pre.get("std")):
            log.warning("pipeline %s was trained with normalisation mean=%s std=%s but eval_transform now "
                        "uses mean=%s std=%s", directory, pre.get("mean"), pre.get("std"), now_mean, now_std)
        return pipe

    def __repr__(self) -> str:
        return (f"Pipeline(family={self.family!r}, classes={len(self.classes)}, img_size={self.img_size}, "
                f"encoder={self.encoder.config.get('backbone')!r}, device={self.device!r}, "
                f"extras={list(self.extras)})")


def _key(c: Any) -> Any:
    """Hashable, type-normalised key of an SVM class (numpy ints/strings -> Python)."""
    return int(c) if isinstance(c, (int, np.integer)) and not isinstance(c, bool) else str(c)


def _is_pil(obj: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, Image.Image)


def _knowledge_files(source: Path | None) -> list[Path]:
    """The knowledge a pipeline carries: the folder it was loaded with, else the packaged one."""
    if source is not None and Path(source).is_dir():
        return sorted(p for p in Path(source).iterdir() if p.is_file())
    from zoo.knowledge import knowledge_files

    return knowledge_files()
