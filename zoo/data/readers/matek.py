"""Matek et al. 2021 bone-marrow layout: ``bone_marrow_cell_dataset/<ABBR>/[<range>/]<ABBR>_nnnnn.jpg``.

Large classes of the published set are split in sub-folders such as ``0001-1000/``; the class is
always the top folder (the abbreviation), so the range folders need no special handling beyond
recursion. ``root`` may be the folder holding ``bone_marrow_cell_dataset`` or that folder itself.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import READERS
from .base import list_files

SUBFOLDER = "bone_marrow_cell_dataset"


@READERS.register("matek", dataset="matek")
def read_matek(root: Path, **opts) -> pd.DataFrame:
    if opts:
        raise TypeError(f"reader 'matek' got unknown option(s) {', '.join(sorted(opts))}")
    root = Path(root)
    base, prefix = (root / SUBFOLDER, f"{SUBFOLDER}/") if (root / SUBFOLDER).is_dir() else (root, "")
    rows = []
    for rel in list_files(base):
        parts = rel.split("/")
        if len(parts) < 2:  # e.g. abbreviations.csv beside the class folders: not a cell
            rows.append({"image": prefix + rel, "source_label": None})
            continue
        rows.append({"image": prefix + rel, "source_label": parts[0]})
    return pd.DataFrame(rows, columns=["image", "source_label"])
