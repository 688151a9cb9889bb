"""ImageFolder layout: ``<root>/<class>/**/<image>``; the class is the top folder, at any depth."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import READERS
from .base import list_files, top_folder


@READERS.register("imagefolder", dataset=None)
def read_imagefolder(root: Path, **opts) -> pd.DataFrame:
    """Recursive ImageFolder: ``source_label`` = name of the top-level folder. Files directly in
    the root get no label (reported and dropped by ingest). ``group_depth=2`` (option) uses the
    second path component as the group, for layouts like ``<class>/<patient>/<image>``."""
    group_depth = opts.pop("group_depth", None)
    _no_more_options("imagefolder", opts)
    rows = []
    for rel in list_files(root):
        parts = rel.split("/")
        group = parts[int(group_depth) - 1] if group_depth and len(parts) > int(group_depth) else None
        rows.append({"image": rel, "source_label": top_folder(rel), "group": group})
    return pd.DataFrame(rows, columns=["image", "source_label", "group"])


def _no_more_options(reader: str, opts: dict) -> None:
    if opts:
        raise TypeError(f"reader {reader!r} got unknown option(s) {', '.join(sorted(opts))}")
