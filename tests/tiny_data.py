"""A tiny in-memory 3-class cell set written as a prepared dataset, for tests that train.

Three classes drawn as noisy discs of distinct colours (trivially separable, so a broken label
mapping shows), 36 images at 32 px, 3 folds: fold 0 trains on 12 images, validates on 12, tests
on 12. Used by the contract test and the protocol tests; nothing is downloaded.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np

CLASSES = ("blast", "eosinophil", "lymphocyte")
COLOURS = {"blast": (150, 60, 170), "eosinophil": (230, 120, 60), "lymphocyte": (60, 90, 200)}
SIZE = 32
PER_CLASS = 12


def cells(labels, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """(N, size, size, 3) uint8: a noisy disc of the class colour on a pale background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((len(labels), size, size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        img = np.full((size, size, 3), 235, dtype=int)
        r = rng.uniform(0.25, 0.38) * size
        cy, cx = rng.uniform(0.38, 0.62, 2) * size
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = COLOURS[label]
        out[i] = np.clip(img + rng.integers(-20, 21, img.shape), 0, 255)
    return out


def make_tiny_prepared(home: Path, name: str = "tiny"):
    """Write the images under ``home/raw_<name>`` and ingest them as prepared dataset ``name``
    (``home`` must be ``$ZOO_HOME`` so the runner finds it by name)."""
    from PIL import Image

    from zoo.data.ingest import ingest

    src = Path(home) / f"raw_{name}"
    labels = [c for c in CLASSES for _ in range(PER_CLASS)]
    for i, (label, img) in enumerate(zip(labels, cells(labels, seed=3))):
        (src / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(src / label / f"{i:03d}.png")
    return ingest(src, name, reader="imagefolder", n_folds=3, near_distance=-1, review_distance=-1, workers=1,
                  verbose=False)


#: common parameters that make any family train in seconds on the tiny set
TINY = {"dataset": "tiny", "fold": "0", "epochs": "1", "patience": "1", "img_size": "32", "batch_size": "8",
        "backbone": "resnet10t", "num_workers": "0", "seed": "0"}


@contextmanager
def tiny_project(home: Path):
    """``home`` as an isolated zoo project (its own ZOO_HOME and SQLite store, no inherited MLflow
    run/experiment) holding the tiny prepared dataset, for the duration of the block."""
    import pytest

    with pytest.MonkeyPatch.context() as mp:
        for var in ("MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID",
                    "ZOO_DATA_DIR"):
            mp.delenv(var, raising=False)
        mp.setenv("ZOO_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        make_tiny_prepared(home)
        yield home
