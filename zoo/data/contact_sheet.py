"""A contact sheet: one row of sample cells per class, to eyeball a prepared dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from zoo.paths import project_dir

from .images import ImageDecodeError, load_rgb_resized

_LABEL_W = 190
_PAD = 2


def contact_sheet(prepared, out: str | Path | None = None, per_class: int = 8, size: int = 72,
                  seed: int = 0) -> Path:
    """Write a PNG grid (classes in ontology order x ``per_class`` random samples at ``size`` px)
    for a :class:`~zoo.data.prepared.PreparedDataset`; returns its path (default
    ``outputs/contact_sheets/<name>.png``: not inside the prepared folder, which is a DVC
    output that must stay untouched)."""
    df = prepared.manifest
    classes = prepared.classes
    rng = np.random.RandomState(seed)
    cell = size + _PAD
    sheet = Image.new("RGB", (_LABEL_W + per_class * cell + _PAD, len(classes) * cell + _PAD), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for r, cls in enumerate(classes):
        rows = df[df["label"] == cls]
        pick = rows.iloc[np.sort(rng.choice(len(rows), size=min(per_class, len(rows)), replace=False))]
        y = _PAD + r * cell
        draw.text((6, y + size // 2 - 12), cls, fill="black", font=font)
        draw.text((6, y + size // 2 + 2), f"n={len(rows)}", fill="gray", font=font)
        for c, path in enumerate(prepared.image_paths(pick)):
            try:
                tile = load_rgb_resized(path, size)
            except ImageDecodeError:  # a file deleted since ingest: show a grey tile, not a crash
                tile = Image.new("RGB", (size, size), (200, 200, 200))
            sheet.paste(tile, (_LABEL_W + c * cell, y))
    out = Path(out) if out else project_dir() / "outputs" / "contact_sheets" / f"{prepared.name}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
