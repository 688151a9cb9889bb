"""Checkpoint files of a training run, written atomically (a kill never leaves a torn file), read
with ``torch.load(..., weights_only=True)`` — a checkpoint is data (tensors, numbers, strings,
lists, dicts), so reading one never runs code from it.

``<checkpoint_dir>/last.pt``        everything needed to resume (written every epoch)
``<checkpoint_dir>/best.pt``        the best epoch's model weights, epoch and monitored value
``<checkpoint_dir>/best_svm.skops`` the SVM stage fitted at the best epoch (skops, trusted types)

numpy values (the numpy RNG state, metrics) are stored as tensors/Python numbers in a tagged
form (:func:`to_safe` / :func:`from_safe`) because ``weights_only`` refuses numpy objects.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

LAST = "last.pt"
BEST = "best.pt"
BEST_SVM = "best_svm.skops"
FORMAT_VERSION = 2
_ARRAY = "__ndarray__"


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Write through a temporary file in the same folder, fsync, then ``os.replace`` (atomic on
    POSIX and Windows), so readers see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def to_safe(obj: Any) -> Any:
    """``obj`` with numpy arrays/scalars turned into what ``weights_only`` loading accepts."""
    if isinstance(obj, np.ndarray):
        return {_ARRAY: torch.from_numpy(np.ascontiguousarray(obj).astype(np.int64 if obj.dtype.kind in "ui" else obj.dtype,
                                                                          copy=False)),
                "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: to_safe(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(to_safe(v) for v in obj)
    if isinstance(obj, list):
        return [to_safe(v) for v in obj]
    return obj


def from_safe(obj: Any) -> Any:
    """Inverse of :func:`to_safe`."""
    if isinstance(obj, dict):
        if _ARRAY in obj and set(obj) == {_ARRAY, "dtype"}:
            return obj[_ARRAY].numpy().astype(obj["dtype"])
        return {k: from_safe(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(from_safe(v) for v in obj)
    if isinstance(obj, list):
        return [from_safe(v) for v in obj]
    return obj


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    safe = to_safe(obj)
    _atomic_write(Path(path), lambda tmp: torch.save(safe, tmp))


def save_svm(svm: Any, path: str | os.PathLike) -> None:
    """The SVM stage through skops (trusted types of :mod:`zoo.models.safe_io`), atomically."""
    from zoo.models.safe_io import dump_estimator

    _atomic_write(Path(path), lambda tmp: dump_estimator(svm, tmp))


def load_svm(path: str | os.PathLike) -> Any:
    from zoo.models.safe_io import load_estimator

    return load_estimator(path)


def load_torch(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_torch` (``weights_only=True``)."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (EOFError, RuntimeError, OSError) as exc:
        raise ValueError(f"cannot read checkpoint {path}: {exc}. Delete it to start the run afresh.") from exc
    except Exception as exc:  # pickle.UnpicklingError: an old-format or foreign checkpoint
        raise ValueError(f"cannot read checkpoint {path} as data (weights_only): {str(exc).splitlines()[0]}. "
                         "It is from an older zoo or not a zoo checkpoint: delete it to start afresh.") from exc
    return from_safe(state)


def last_checkpoint(checkpoint_dir: str | os.PathLike | None) -> Path | None:
    if checkpoint_dir is None:
        return None
    path = Path(checkpoint_dir) / LAST
    return path if path.is_file() else None


def read_extra(checkpoint_dir: str | os.PathLike | None) -> dict[str, Any] | None:
    """The opaque ``extra`` dict of the last checkpoint (e.g. the MLflow run id to continue), or
    None when there is no checkpoint — lets the caller reopen the same run before resuming."""
    path = last_checkpoint(checkpoint_dir)
    if path is None:
        return None
    return dict(load_torch(path).get("extra") or {})


def checkpoint_summary(checkpoint_dir: str | os.PathLike | None) -> dict[str, Any] | None:
    """Epoch, best value/epoch and whether the run finished, from the last checkpoint."""
    path = last_checkpoint(checkpoint_dir)
    if path is None:
        return None
    state = load_torch(path)
    es = state.get("early_stopping", {})
    return {"epoch": state["epoch"], "finished": state.get("finished", False),
            "best": es.get("best"), "best_epoch": es.get("best_epoch"), "monitor": state.get("monitor")}
