"""Zheng et al. 2018 segmentation_WBC sets: ``Dataset N/NNN.bmp`` + mask ``NNN.png`` +
``Class Labels of Dataset N.csv`` (image id, class 1..5).

Labels stay the publishers' digits ('1' neutrophil, '2' lymphocyte, '3' monocyte, '4'
eosinophil, '5' basophil); the ontology's ``zheng`` aliases map them. Masks are returned as they
are on disk: ingest snaps stray grey levels to {0, 128, 255} into a cleaned copy. ``group`` is
the set ("Dataset 1" / "Dataset 2"): two very different imaging sources.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from . import READERS

_SET = re.compile(r"^Dataset (\d+)$")


@READERS.register("zheng", dataset="zheng")
def read_zheng(root: Path, **opts) -> pd.DataFrame:
    """``root`` holds ``Dataset N/`` folders (or is one); ``sets=[1]`` (option) reads only some."""
    sets = opts.pop("sets", None)
    if opts:
        raise TypeError(f"reader 'zheng' got unknown option(s) {', '.join(sorted(opts))}")
    root = Path(root)
    if _SET.match(root.name) and not any(_SET.match(p.name) for p in root.iterdir() if p.is_dir()):
        folders, prefix_root = [root], root.parent
    else:
        folders, prefix_root = sorted(p for p in root.iterdir() if p.is_dir() and _SET.match(p.name)), root
    if sets is not None:
        wanted = {int(s) for s in ([sets] if isinstance(sets, (int, str)) else sets)}
        folders = [f for f in folders if int(_SET.match(f.name).group(1)) in wanted]
    if not folders:
        raise FileNotFoundError(f"no 'Dataset N' folders in {root}; the Zheng layout is "
                                "'Dataset 1/001.bmp' + '001.png' + 'Class Labels of Dataset 1.csv'")
    rows = []
    for folder in folders:
        n = _SET.match(folder.name).group(1)
        csv = _label_csv(prefix_root, folder, n)
        labels = pd.read_csv(csv)
        if labels.shape[1] < 2:
            raise ValueError(f"{csv}: expected two columns (image id, class label)")
        labels = labels.iloc[:, :2].dropna()
        rel_folder = folder.relative_to(root) if folder != root else Path(".")
        for image_id, label in zip(labels.iloc[:, 0], labels.iloc[:, 1]):
            stem = f"{int(image_id):03d}"
            image = _find_image(folder, stem)
            mask = folder / f"{stem}.png"
            rows.append({
                "image": (rel_folder / image).as_posix(),
                "source_label": str(int(label)),
                "group": folder.name,
                "mask": (rel_folder / mask.name).as_posix() if mask.is_file() else None,
            })
    return pd.DataFrame(rows, columns=["image", "source_label", "group", "mask"])


def _label_csv(root: Path, folder: Path, n: str) -> Path:
    name = f"Class Labels of Dataset {n}.csv"
    for candidate in (root / name, folder / name, folder.parent / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"label file {name!r} not found beside or inside {folder}")


def _find_image(folder: Path, stem: str) -> str:
    # The published sets use .bmp; accept the common re-encodings of the same layout too.
    for ext in (".bmp", ".BMP", ".jpg", ".jpeg", ".tif", ".tiff"):
        if (folder / f"{stem}{ext}").is_file():
            return stem + ext
    return stem + ".bmp"  # listed but missing: ingest reports it as a missing file
