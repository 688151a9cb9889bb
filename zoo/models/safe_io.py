"""scikit-learn estimators as data: :mod:`skops.io` with an explicit list of trusted types.

``skops.io.load`` rebuilds an object from a JSON schema plus numpy arrays and refuses every type
not on the ``trusted`` list — so, unlike pickle/joblib, reading a file never imports or calls what
the file names. skops itself trusts every scikit-learn type by default; we are stricter: every
type the file's schema names must be on :data:`TRUSTED_TYPES` or be a builtin/numpy data type, so
the list below is the whole of what a zoo artifact or checkpoint may hold. Anything else is refused
with its type name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: Types a zoo SVM stage (searched or refitted) is made of, beyond skops' defaults.
TRUSTED_TYPES: tuple[str, ...] = (
    "zoo.evaluate.svm.SVMStage",
    "sklearn.svm._classes.SVC",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.isotonic.IsotonicRegression",
    "sklearn.frozen._frozen.FrozenEstimator",
    "sklearn.model_selection._split.StratifiedKFold",
    "sklearn.pipeline.Pipeline",
)


_DATA_MODULES = ("builtins", "numpy")  # containers, scalars, arrays, dtypes: data, no behaviour


class UnsafeArtifactError(ValueError):
    """A model folder or file this zoo refuses to load (pickles, unknown kind, code references)."""


class UntrustedArtifactError(UnsafeArtifactError):
    """An estimator file that would need an untrusted type (or code) to load."""


def types_in(data: bytes) -> set[str]:
    """Every ``module.Class`` the schema of a skops file names (read as JSON, nothing imported)."""
    import io
    import json
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        schema = json.loads(zf.read("schema.json"))
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "__module__" in node and "__class__" in node:
                found.add(f"{node['__module__']}.{node['__class__']}")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return found


def _not_trusted(data: bytes) -> list[str]:
    import skops.io as sio

    named = types_in(data) | set(sio.get_untrusted_types(data=data))
    return sorted(t for t in named if t not in TRUSTED_TYPES and t.split(".", 1)[0] not in _DATA_MODULES)


def dump_estimator(estimator: Any, path: str | os.PathLike) -> Path:
    """Write ``estimator`` with ``skops.io.dump``; refuses (before writing) an estimator that
    could not be read back with :data:`TRUSTED_TYPES`."""
    import skops.io as sio

    data = sio.dumps(estimator)
    extra = _not_trusted(data)
    if extra:
        raise UntrustedArtifactError(
            f"{type(estimator).__name__} contains types outside zoo.models.safe_io.TRUSTED_TYPES: {extra}; "
            "add them there only if they hold data, not code")
    path = Path(path)
    path.write_bytes(data)
    return path


def loads_estimator(data: bytes, where: str = "<bytes>") -> Any:
    import skops.io as sio

    untrusted = _not_trusted(data)
    if untrusted:
        raise UntrustedArtifactError(
            f"{where} needs types that are not trusted: {untrusted}; a zoo artifact holds only "
            f"{', '.join(TRUSTED_TYPES)} and numpy data. Refusing to load it")
    return sio.loads(data, trusted=list(TRUSTED_TYPES))


def load_estimator(path: str | os.PathLike) -> Any:
    """Read an estimator written by :func:`dump_estimator`; refuses untrusted types naming them."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no estimator file {path}")
    try:
        data = path.read_bytes()
        return loads_estimator(data, str(path))
    except UntrustedArtifactError:
        raise
    except Exception as exc:  # not a skops file (e.g. a pickle renamed): say so
        raise UntrustedArtifactError(f"{path} is not a readable skops file: {exc}") from exc
