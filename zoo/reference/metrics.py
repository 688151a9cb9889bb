"""Metrics of the reference system (``003_*.txt``).

* ROTMES (§4.7): an image and three transformed copies — rotated, horizontally and vertically
  flipped — go through the pipeline; ``e_i = mse(f_i, f_X)``, ``ROTMES = mean(e_1, e_2, e_3)``,
  computed on up to 100 images per class. Reported per class and as the mean over classes. The
  thesis does not give the rotation angle; 90 degrees is the default here (no blank corners, the
  cell stays whole) and ``angle`` changes it.
* reference precision@k: share of a query's references that carry the query's label.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF


def _transforms(angle: float) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    return {
        "rot": lambda x: TF.rotate(x, angle),
        "hor_flip": TF.horizontal_flip,
        "vert_flip": TF.vertical_flip,
    }


def rotmes(embed: Callable[[np.ndarray], np.ndarray], images: np.ndarray, labels: Sequence,
           per_class: int = 100, angle: float = 90.0, seed: int = 0) -> dict[str, float]:
    """ROTMES per class (``rotmes/<class>``) and over classes (``rotmes``).

    ``embed`` maps a uint8 batch (N, H, W, 3) to features (N, L) — the pipeline up to the reduced
    vector. ``images`` is (N, H, W, 3) uint8; up to ``per_class`` images of each class are used."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3) uint8, got shape {images.shape}")
    labels = np.asarray([str(v) for v in labels])
    if len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images")
    rng = np.random.default_rng(seed)
    chosen = []
    for lab in np.unique(labels):
        rows = np.flatnonzero(labels == lab)
        chosen.append(rows if len(rows) <= per_class else np.sort(rng.choice(rows, per_class, replace=False)))
    idx = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
    base = np.asarray(embed(images[idx]), dtype=np.float64)
    chw = torch.from_numpy(np.ascontiguousarray(images[idx])).permute(0, 3, 1, 2)
    errors = []
    for fn in _transforms(angle).values():
        moved = fn(chw).permute(0, 2, 3, 1).contiguous().numpy()
        f = np.asarray(embed(moved), dtype=np.float64)
        errors.append(((f - base) ** 2).mean(1))
    per_image = np.mean(errors, axis=0)   # mean(e_1, e_2, e_3) per image
    out: dict[str, float] = {}
    for lab in np.unique(labels[idx]):
        out[f"rotmes/{lab}"] = float(per_image[labels[idx] == lab].mean())
    out["rotmes"] = float(np.mean([v for k, v in out.items()])) if out else float("nan")
    return out


def precision_at_k(reference_labels: np.ndarray, query_labels: Sequence) -> float:
    """Mean share of references with the query's label; ``reference_labels`` is (q, k) with
    ``None``/"" for missing references (they count as wrong, so a short list is not rewarded)."""
    refs = np.asarray(reference_labels, dtype=object)
    if refs.ndim != 2:
        raise ValueError(f"reference_labels must be (n_queries, k), got shape {refs.shape}")
    q = np.asarray([str(v) for v in query_labels], dtype=object)
    if len(q) != len(refs):
        raise ValueError(f"{len(q)} query labels for {len(refs)} reference rows")
    if len(q) == 0:
        return float("nan")
    return float((refs == q[:, None]).mean())


def precision_at_k_per_class(reference_labels: np.ndarray, query_labels: Sequence) -> dict[str, float]:
    refs = np.asarray(reference_labels, dtype=object)
    q = np.asarray([str(v) for v in query_labels], dtype=object)
    return {f"precision_at_{refs.shape[1]}/{lab}": float((refs[q == lab] == lab).mean()) for lab in np.unique(q)}
