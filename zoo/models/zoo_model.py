"""One artifact protocol for every model kind (docs/families.md, "Model kinds").

```python
from zoo.models import ZOO_MODELS, ZooModel, load_zoo_model

model.save("out/model")                       # zoo_model.json + the kind's data files
again = load_zoo_model("out/model", device="cpu")
again.predict(images)                         # DataFrame with again.output_schema()'s columns
```

A folder holds ``zoo_model.json`` (``kind``, ``format_version``, ``family``, ``classes``,
``img_size``, preprocessing, training dataset/digest/fold/limit, config) and data files only:
safetensors weights, skops estimators (:mod:`zoo.models.safe_io`), ``.npz`` read with
``allow_pickle=False``, JSON/CSV. :func:`load_zoo_model` resolves the kind **through
:data:`ZOO_MODELS` only** and the extras through :data:`MODEL_EXTRAS` only — never a module path
read from the artifact — and refuses any file it would have to unpickle.
"""

from __future__ import annotations

import abc
import importlib
import json
import logging
import pkgutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import pandas as pd

from zoo.registry import Registry

log = logging.getLogger(__name__)

META_FILE = "zoo_model.json"
FORMAT_VERSION = 1
#: File types that only pickle can read: their presence makes a folder untrusted.
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt", ".dill", ".cloudpkl")
IMAGE_COLUMN = "image"
TRUST_DIR = "trust"  # conformal calibration + decision settings (zoo.evaluate.trust), data only

ZOO_MODELS: Registry = Registry("model kind")
MODEL_EXTRAS: Registry = Registry("model extras")


class BadImageError(ValueError):
    """An input row that cannot be turned into an image; names the row and the reason."""


class ModelInputError(ValueError):
    """Input that is not a batch of images (wrong type, missing ``image`` column, bad array)."""


from zoo.models.safe_io import UnsafeArtifactError  # noqa: E402  (one error type for every refusal)


# --------------------------------------------------------------------------------------------
# inputs (the pyfunc contract of the README, shared by every kind)
# --------------------------------------------------------------------------------------------
def check_batch(array: np.ndarray) -> np.ndarray:
    """An image batch must be (N, H, W, 3) uint8."""
    if array.dtype != np.uint8:
        raise ValueError(f"image batch must be uint8 (0-255), got dtype {array.dtype}; convert with "
                         "np.clip(x, 0, 255).astype(np.uint8) (scale floats in [0, 1] by 255 first)")
    if array.ndim != 4 or array.shape[-1] != 3:
        hint = " (one image? add a batch axis: x[None])" if array.ndim == 3 else ""
        raise ValueError(f"image batch must have shape (N, H, W, 3), got {array.shape}{hint}")
    return array


def to_images(model_input: Any):
    """The batch of images in ``model_input`` (a DataFrame with column ``image``, a Series, a
    dict, a list, or an (N, H, W, 3) uint8 array): a list of per-row values or a checked array."""
    if isinstance(model_input, pd.DataFrame):
        if IMAGE_COLUMN not in model_input.columns:
            raise ModelInputError(
                f"model input has no {IMAGE_COLUMN!r} column (columns: {list(model_input.columns)}); "
                f"send a DataFrame with column {IMAGE_COLUMN!r} holding file paths or base64 PNG/JPEG, "
                "or an (N, H, W, 3) uint8 array")
        return model_input[IMAGE_COLUMN].tolist()
    if isinstance(model_input, pd.Series):
        return model_input.tolist()
    if isinstance(model_input, dict):
        if IMAGE_COLUMN not in model_input:
            raise ModelInputError(f"model input has no {IMAGE_COLUMN!r} key (keys: {list(model_input)})")
        return to_images(pd.DataFrame({IMAGE_COLUMN: list(model_input[IMAGE_COLUMN])}))
    if isinstance(model_input, np.ndarray):
        if model_input.size == 0 and model_input.ndim >= 1 and model_input.shape[0] == 0:
            return []
        try:
            return check_batch(model_input)
        except ValueError as exc:
            raise ModelInputError(str(exc)) from None
    if isinstance(model_input, (list, tuple)):
        return list(model_input)
    if isinstance(model_input, (str, bytes)) or _is_pil(model_input):
        raise TypeError("predict takes a batch: wrap a single image in a list")
    raise ModelInputError(
        f"model input must be a DataFrame with an {IMAGE_COLUMN!r} column or an (N, H, W, 3) uint8 "
        f"array, got {type(model_input).__name__}")


def decode_batch(items: Sequence[Any], transform, offset: int = 0):
    """Decode and preprocess a batch into a tensor; a bad item raises :class:`BadImageError`
    naming its row (``offset`` + position)."""
    import torch

    from zoo.data.images import decode_image

    tensors = []
    for i, item in enumerate(items):
        row = offset + i
        if item is None or item is pd.NA or (isinstance(item, float) and np.isnan(item)):
            raise BadImageError(f"row {row}: no image (empty value)")
        try:
            tensors.append(transform(decode_image(item)))
        except BadImageError:
            raise
        except Exception as exc:  # decode_image's own message says what is wrong
            raise BadImageError(f"row {row}: cannot decode image: {exc}") from exc
    return torch.stack(tensors)


def empty_frame(schema: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """A 0-row frame with the declared columns and dtypes (the answer to an empty input)."""
    dtypes = {"string": object, "double": np.float64, "float": np.float32, "long": np.int64,
              "integer": np.int32, "boolean": bool}
    return pd.DataFrame({c: pd.Series([], dtype=dtypes.get(t, object)) for c, t in schema})


def _is_pil(obj: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, Image.Image)


def normalize_stats(transform) -> tuple[list[float] | None, list[float] | None]:
    """mean/std of the Normalize step of a torchvision (v2) transform, for the record."""
    for step in getattr(transform, "transforms", [transform]):
        if hasattr(step, "mean") and hasattr(step, "std"):
            return [float(v) for v in step.mean], [float(v) for v in step.std]
    return None, None


def jsonable(value: Any) -> Any:
    """Plain JSON types (numpy scalars/arrays, paths, tuples) for ``zoo_model.json``."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# --------------------------------------------------------------------------------------------
# extras
# --------------------------------------------------------------------------------------------
class ModelExtras(abc.ABC):
    """Family-specific output columns of an embedding model (``guide_x``, ``maturity``…).

    Register with ``@MODEL_EXTRAS.register("<name>")``; the name is what ``zoo_model.json``
    records and the only thing used to find the class again. ``save(dir)`` writes data files
    (JSON/CSV/NPZ/safetensors), ``load(dir)`` reads them back; never joblib or pickle.
    ``columns(embeddings, probs)`` returns name -> N values; ``output_schema()`` declares them.
    """

    @abc.abstractmethod
    def save(self, directory: Path) -> None: ...

    @classmethod
    @abc.abstractmethod
    def load(cls, directory: Path) -> "ModelExtras": ...

    @abc.abstractmethod
    def columns(self, embeddings: np.ndarray, probs: np.ndarray) -> dict[str, Any]: ...

    @abc.abstractmethod
    def output_schema(self) -> list[tuple[str, str]]: ...

    def config(self) -> dict[str, Any]:
        return {}


# --------------------------------------------------------------------------------------------
# the base class of every kind
# --------------------------------------------------------------------------------------------
class ZooModel(abc.ABC):
    """A trained model of one kind: predicts a DataFrame of declared columns; saves as data.

    Subclasses set ``kind`` (their ``ZOO_MODELS`` name) and implement :meth:`predict`,
    :meth:`output_schema`, :meth:`save_files` and :meth:`load_files`. The constructor's common
    state: ``family``, ``classes`` (empty for a kind without classes), ``img_size``, ``config``
    (the training parameters), ``training`` (dataset, dataset_digest, fold, limit…).
    """

    kind: ClassVar[str] = ""
    #: Prediction sets, severity-aware decision and referral (:class:`zoo.evaluate.trust.TrustLayer`)
    #: of a kind with ``p_<class>`` outputs: attached by the family after calibrating on the
    #: validation fold, saved under ``trust/``, applied by :meth:`predict_with_trust` (the pyfunc).
    trust: Any = None

    def __init__(self, *, family: str, classes: Sequence[str] = (), img_size: int, config: Mapping | None = None,
                 training: Mapping | None = None, meta: Mapping | None = None):
        self.family = str(family)
        self.classes = [str(c) for c in classes]
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"duplicate classes in {self.classes}")
        self.img_size = int(img_size)
        self.config = dict(config or {})
        self.training = dict(training or {})
        self.meta = dict(meta or {})
        self._transform = None

    # -- preprocessing (the evaluation path of training) ---------------------------------------
    @property
    def transform(self):
        if self._transform is None:
            from zoo.data.transforms import eval_transform

            self._transform = eval_transform(self.img_size)
        return self._transform

    @property
    def preprocessing(self) -> dict[str, Any]:
        mean, std = normalize_stats(self.transform)
        return {"img_size": self.img_size, "mean": mean, "std": std,
                "transform": "zoo.data.transforms.eval_transform"}

    check_batch = staticmethod(check_batch)

    # -- the protocol ----------------------------------------------------------------------------
    @abc.abstractmethod
    def predict(self, images, **params: Any) -> pd.DataFrame:
        """Declared columns (:meth:`output_schema`), one row per image; 0 rows for 0 images."""

    @abc.abstractmethod
    def output_schema(self) -> list[tuple[str, str]]:
        """``(column, mlflow type)`` of every output column (without optional ones)."""

    def params_schema(self) -> list[tuple[str, str, Any]]:
        """``(name, mlflow type, default)`` of the predict parameters the pyfunc passes through."""
        return []

    # -- the trust layer (every kind with class probabilities; none: the kind's own outputs) ------
    def schema_with_trust(self) -> list[tuple[str, Any]]:
        """:meth:`output_schema` with the trust layer's columns right after the ``p_<class>`` ones
        (family extras stay last), as the pyfunc declares and returns them."""
        from zoo.evaluate.trust import OUTPUT_SCHEMA

        schema = list(self.output_schema())
        if self.trust is None:
            return schema
        at = max((i + 1 for i, (c, _) in enumerate(schema) if str(c).startswith("p_")), default=len(schema))
        return schema[:at] + list(OUTPUT_SCHEMA) + schema[at:]

    def params_with_trust(self) -> list[tuple[str, str, Any]]:
        """:meth:`params_schema` + ``coverage``/``decision``/``max_set_size`` when calibrated."""
        return list(self.params_schema()) + (self.trust.params_schema() if self.trust is not None else [])

    def predict_with_trust(self, images, **params: Any) -> pd.DataFrame:
        """:meth:`predict`, then the trust layer's columns (``prediction_set``, ``set_size``,
        ``refer``, ``label_min_severity``; ``label`` by the chosen decision) in the order of
        :meth:`schema_with_trust`, optional columns (``embedding``) last."""
        if self.trust is None:
            return self.predict(images, **params)
        from zoo.evaluate.trust import PARAM_NAMES

        settings = {k: params.pop(k) for k in PARAM_NAMES if k in params}
        out = self.trust.apply(self.predict(images, **params), **settings)
        declared = [c for c, _ in self.schema_with_trust()]
        return out[declared + [c for c in out.columns if c not in declared]]

    @abc.abstractmethod
    def save_files(self, directory: Path) -> dict[str, Any]:
        """Write the kind's data files; return what ``zoo_model.json`` should record for them."""

    @classmethod
    @abc.abstractmethod
    def load_files(cls, directory: Path, meta: Mapping[str, Any], device: str) -> "ZooModel":
        """Rebuild the model from its folder and the parsed ``zoo_model.json``."""

    # -- persistence -------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "format_version": FORMAT_VERSION,
            "family": self.family,
            "classes": self.classes,
            "img_size": self.img_size,
            "preprocessing": self.preprocessing,
            "training": self.training,
            "config": self.config,
            "output_schema": [list(c) for c in self.output_schema()],
            "params_schema": [list(p) for p in self.params_schema()],
            "zoo_version": _zoo_version(),
        }

    def save(self, directory: str | Path) -> Path:
        """Write the model folder (created; files of an earlier save there are replaced)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = dict(self.save_files(directory) or {})
        if self.trust is not None:
            self.trust.save(directory / TRUST_DIR)
            files["trust"] = TRUST_DIR
        meta = {**self.metadata(), "files": files,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        (directory / META_FILE).write_text(json.dumps(jsonable(meta), indent=2))
        check_folder(directory)  # what we write must be what we would load
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str = "auto") -> "ZooModel":
        model = load_zoo_model(directory, device=device)
        if cls is not ZooModel and not isinstance(model, cls):
            raise ValueError(f"{directory} holds a model of kind {model.kind!r}, not {cls.kind!r}")
        return model

    def empty(self) -> pd.DataFrame:
        return empty_frame(self.output_schema())

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(kind={self.kind!r}, family={self.family!r}, classes={len(self.classes)}, "
                f"img_size={self.img_size})")


def _zoo_version() -> str:
    import zoo

    return getattr(zoo, "__version__", "unknown")


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------
_MODULE_KEYS = ("module", "class", "loader", "python_class", "py/object", "__module__", "__class__")


def _find_code_refs(value: Any, path: str = "") -> list[str]:
    """Places in ``zoo_model.json`` that name Python code (a module/class path): a zoo artifact
    never needs one, so any is a sign of tampering (or of the old format)."""
    found = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            where = f"{path}.{k}" if path else str(k)
            if k in _MODULE_KEYS:
                found.append(where)
            found += _find_code_refs(v, where)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _find_code_refs(v, f"{path}[{i}]")
    return found


def check_folder(directory: Path) -> None:
    """Refuse a folder holding files only pickle can read (anywhere below it)."""
    bad = sorted(str(p.relative_to(directory)) for p in directory.rglob("*")
                 if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)
    if bad:
        raise UnsafeArtifactError(
            f"{directory} holds file(s) that only pickle can read: {bad}. A zoo model is data only "
            "(safetensors, skops, npz, JSON/CSV); refusing to load it. Remove them if you put them there, "
            "otherwise do not trust this model")


def read_meta(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        hint = " (an old-format pipeline: retrain or re-package it)" if (directory / "pipeline.json").is_file() else ""
        raise FileNotFoundError(f"{directory} is not a zoo model folder (no {META_FILE}){hint}")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise UnsafeArtifactError(f"{meta_path} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise UnsafeArtifactError(f"{meta_path} must hold a JSON object")
    return meta


def load_zoo_model(directory: str | Path, device: str = "auto") -> ZooModel:
    """Load a model folder written by :meth:`ZooModel.save`.

    Reads ``zoo_model.json``, refuses pickle-only files, module/class paths in the JSON, a newer
    format and unknown kinds (listing the known ones), then calls the kind's ``load_files``.
    """
    directory = Path(directory)
    meta = read_meta(directory)
    check_folder(directory)
    refs = _find_code_refs(meta)
    if refs:
        raise UnsafeArtifactError(
            f"{directory / META_FILE} names Python code at {refs}; zoo models are resolved by registry "
            "name only (ZOO_MODELS, MODEL_EXTRAS). Refusing to load it")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise UnsafeArtifactError(f"{directory / META_FILE}: format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{directory} has model format {version}; this zoo reads up to {FORMAT_VERSION}: "
                         "upgrade marrow-zoo")
    kind = meta.get("kind")
    if not isinstance(kind, str):
        raise UnsafeArtifactError(f"{directory / META_FILE} has no model kind")
    discover()
    if kind not in ZOO_MODELS:
        raise UnsafeArtifactError(f"{directory} has unknown model kind {kind!r}; known kinds: "
                                  f"{', '.join(ZOO_MODELS.names())}")
    model = ZOO_MODELS.get(kind).load_files(directory, meta, device)
    if (directory / TRUST_DIR).is_dir():
        from zoo.evaluate.trust import TrustLayer

        model.trust = TrustLayer.load(directory / TRUST_DIR)
        if model.trust.classes != model.classes:
            raise ValueError(f"{directory / TRUST_DIR} was calibrated for classes {model.trust.classes}, "
                             f"the model has {model.classes}")
    pre = meta.get("preprocessing") or {}
    now_mean, now_std = normalize_stats(model.transform)
    if pre.get("mean") is not None and (now_mean != pre.get("mean") or now_std != pre.get("std")):
        log.warning("model %s was trained with normalisation mean=%s std=%s but eval_transform now uses "
                    "mean=%s std=%s", directory, pre.get("mean"), pre.get("std"), now_mean, now_std)
    return model


_DISCOVERED = False


def discover() -> None:
    """Import every module of :mod:`zoo.models` so their kinds and extras register (found, not
    listed: a new kind is a new file with a decorated class)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    import zoo.models as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")
    _DISCOVERED = True
