"""What a model was trained on, said where it is used.

A registered model's ``zoo_model.json`` records its training data (``training``: dataset, digest,
fold, limit; plus ``classes`` and ``img_size``, written by the runner). Loading a model prints a
one-line notice naming that dataset, and predicting warns when the input looks unlike it: image
files given to a model trained on the synthetic marrow (``synth`` lives only in the prepared
parquet, so any file is real data to it), or images whose size is far from the training size.
Both are printed to stderr, so a CSV written to stdout stays clean.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

SYNTHETIC_DATASETS = ("synth",)
# Resizing by more than this factor (either way) to reach the training size is "far from training".
SIZE_RATIO = 4.0
_SAMPLE = 8  # images whose header is read to judge the size (headers only: cheap)


def training_notice(model) -> str:
    """``model trained on dataset 'pbc10' (digest 0bba66c4…, fold 0, limit none): 8 classes, 64 px``."""
    t = dict(getattr(model, "training", None) or {})
    name = t.get("dataset") or "unknown (the model records no training dataset)"
    digest = str(t.get("dataset_digest") or "")[:8]
    bits = [f"digest {digest}…" if digest else None, f"fold {t['fold']}" if "fold" in t else None,
            f"limit {t.get('limit') if t.get('limit') not in (None, '') else 'none'}" if t else None]
    detail = ", ".join(b for b in bits if b)
    classes = len(getattr(model, "classes", ()) or ())
    what = f"{classes} classes, " if classes else ""
    synthetic = " — synthetic images, not real cells" if t.get("dataset") in SYNTHETIC_DATASETS else ""
    return (f"model trained on dataset {name!r}" + (f" ({detail})" if detail else "")
            + f": {what}{model.img_size} px{synthetic}")


def _image_size(item: Any) -> tuple[int, int] | None:
    if isinstance(item, (str, Path)) and _is_file(item):
        from PIL import Image

        try:
            with Image.open(item) as im:
                return im.size[1], im.size[0]
        except Exception:  # unreadable files are reported (with their row) by predict itself
            return None
    return None


def _is_file(item: Any) -> bool:
    """Whether ``item`` names an existing file; a base64 image is far longer than a path may be
    (``OSError: File name too long``), so it is simply not a file."""
    try:
        return Path(str(item)).is_file()
    except OSError:
        return False


def input_warnings(model, images: Any) -> list[str]:
    """Why ``images`` (what :func:`zoo.models.zoo_model.to_images` returns) look unlike the
    model's training data; empty when nothing looks off."""
    t = dict(getattr(model, "training", None) or {})
    out: list[str] = []
    if hasattr(images, "shape") and getattr(images, "ndim", 0) == 4:
        sizes = [tuple(images.shape[1:3])]
        files = False
    else:
        items: Sequence[Any] = list(images or [])[:_SAMPLE]
        files = any(isinstance(i, (str, Path)) and _is_file(i) for i in items)
        sizes = [s for s in map(_image_size, items) if s]
    if files and t.get("dataset") in SYNTHETIC_DATASETS:
        out.append(f"this model was trained on the synthetic dataset {t['dataset']!r}, and these are image "
                   "files of real data: its predictions do not describe real cells (pick a model trained on "
                   "real cells: `zoo models list` shows the dataset of each version)")
    size = int(getattr(model, "img_size", 0) or 0)
    if size and sizes:
        side = max(max(s) for s in sizes)
        if side > SIZE_RATIO * size or side * SIZE_RATIO < size:
            out.append(f"input images are {side} px, the model was trained on {size} px images of "
                       f"{t.get('dataset', 'its training set')!r}: far from training, expect poorer predictions")
    return out


def warn_about_input(model, images: Any) -> None:
    for message in input_warnings(model, images):
        print(f"zoo: warning: {message}", file=sys.stderr)


def announce(model) -> None:
    print(f"zoo: {training_notice(model)}", file=sys.stderr)
