"""Checkpoint files of a training run, written atomically (a kill never leaves a torn file).

``<checkpoint_dir>/last.pt``        everything needed to resume (written every epoch)
``<checkpoint_dir>/best.pt``        the best epoch's model weights, epoch and monitored value
``<checkpoint_dir>/best_svm.joblib`` the SVM stage fitted at the best epoch
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import joblib
import torch

LAST = "last.pt"
BEST = "best.pt"
BEST_SVM = "best_svm.joblib"
FORMAT_VERSION = 1


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


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    _atomic_write(Path(path), lambda tmp: torch.save(obj, tmp))


def save_joblib(obj: Any, path: str | os.PathLike) -> None:
    _atomic_write(Path(path), lambda tmp: joblib.dump(obj, tmp))


def load_torch(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    # weights_only=False: our own checkpoints hold RNG states (numpy arrays, tuples) and history;
    # only load checkpoints this code wrote (the checkpoint folder is as trusted as the code).
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except (EOFError, RuntimeError, OSError) as exc:
        raise ValueError(f"cannot read checkpoint {path}: {exc}. Delete it to start the run afresh.") from exc


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
