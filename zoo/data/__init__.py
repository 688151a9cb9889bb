"""The data layer: readers, cleaning, manifests, folds, torch datasets, the synthetic default.

Heavy modules (torch) load on first use, so ``import zoo.data`` stays cheap for the CLI::

    from zoo.data import ingest, PreparedDataset, make_loaders, decode_image
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ingest": "zoo.data.ingest",
    "PreparedDataset": "zoo.data.prepared",
    "list_prepared": "zoo.data.prepared",
    "decode_image": "zoo.data.images",
    "ImageDecodeError": "zoo.data.images",
    "READERS": "zoo.data.readers",
    "CellDataset": "zoo.data.datasets",
    "make_loaders": "zoo.data.datasets",
    "train_transform": "zoo.data.transforms",
    "eval_transform": "zoo.data.transforms",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zoo.data' has no attribute {name!r}")
