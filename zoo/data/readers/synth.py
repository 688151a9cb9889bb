"""The synthetic bone marrow written by :func:`zoo.data.synth.generate`: ``cells.csv`` with
columns ``image``, ``source_label`` (canonical id), ``group`` (simulated slide), ``mask`` and
``maturity`` (the true continuous maturity, in [0, 1]), paths relative to the folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import READERS

MANIFEST_NAME = "cells.csv"
COLUMNS = ("image", "source_label", "group", "mask", "maturity")


@READERS.register("synth", dataset="synth")
def read_synth(root: Path, **opts) -> pd.DataFrame:
    if opts:
        raise TypeError(f"reader 'synth' got unknown option(s) {', '.join(sorted(opts))}")
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a synthetic dataset folder holds {MANIFEST_NAME}; "
                                "create one with `zoo data synth`")
    df = pd.read_csv(path, dtype={"image": str, "source_label": str, "group": str, "mask": str})
    missing = [c for c in ("image", "source_label") if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)})")
    return df[[c for c in COLUMNS if c in df.columns]]
