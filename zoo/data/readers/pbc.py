"""PBC dataset (Acevedo et al. 2020): ``PBC_dataset_normal_DIB/<folder>/<PREFIX>_<id>.jpg``.

The folder is the coarse class (``ig``, ``neutrophil`` ...); the file-name prefix carries the fine
label (PMY/MY/MMY inside ``ig``, BNE/SNE inside ``neutrophil``), which is what the maturation
models need, so the prefix wins. ``root`` may be the folder holding ``PBC_dataset_normal_DIB`` or
that folder itself.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import pandas as pd

from . import READERS
from .base import list_files

SUBFOLDER = "PBC_dataset_normal_DIB"
_PREFIX = re.compile(r"^([A-Za-z]+)_")


@READERS.register("pbc", dataset="pbc")
def read_pbc(root: Path, **opts) -> pd.DataFrame:
    """``fine=False`` (option) labels by folder instead of prefix (coarse classes)."""
    fine = bool(opts.pop("fine", True))
    if opts:
        raise TypeError(f"reader 'pbc' got unknown option(s) {', '.join(sorted(opts))}")
    root = Path(root)
    base, prefix = (root / SUBFOLDER, f"{SUBFOLDER}/") if (root / SUBFOLDER).is_dir() else (root, "")
    rows = []
    for rel in list_files(base):
        parts = PurePosixPath(rel).parts
        if len(parts) < 2:  # index files etc. beside the class folders
            label = None
        elif fine:
            m = _PREFIX.match(parts[-1])
            # Files without a prefix fall back to their folder (coarse) rather than being lost.
            label = m.group(1).upper() if m else parts[0]
        else:
            label = parts[0]
        rows.append({"image": prefix + rel, "source_label": label})
    return pd.DataFrame(rows, columns=["image", "source_label"])
