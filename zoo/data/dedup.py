"""Duplicate detection: byte-identical files and near-identical images.

Rules (the average-hash rule of the reference-cells paper, ``003_*.txt``):

* identical bytes, same label: keep one (the first by path), drop the others;
* identical bytes under different labels: drop *all* copies (the label cannot be trusted);
* average-hash Hamming distance <= 2 within a class: near-duplicates, keep one;
* distance == 3 within a class: kept, but listed for review.

Confirmation (``confirm``, default 5.0): an average-hash near-duplicate is only *dropped* when the
two images also look alike pixel by pixel -- mean absolute difference <= ``confirm`` (0-255 scale)
between 32 px thumbnails with each channel's mean removed, so a global colour or brightness shift
between two captures of one cell does not count. Close pairs that fail the check are listed for
review (up to ``confirm + REVIEW_MARGIN``). Why: the 8x8 average hash of a *centred single-cell
patch* mostly encodes "dark disc in the middle". Measured on ../shared/data: the hash alone drops
3 PBC images, of which only MO_415531/MO_231316 is a duplicate (pixel difference 2.3), and ~70
distinct Zheng cells (2,122 pairs of its 400 images are within distance 3, some across the two
labs' sets). With the check, PBC loses only that duplicate, Zheng only 139 (byte copy of 112) and
171 (a recapture of 166, difference 3.7); 157/158 (6.6) is listed for review, and the closest
distinct look-alikes differ by >= 5.9. Hashes with more bits (pHash, wavelet hash) separated
these pairs worse. ``confirm=None`` applies the paper's rule as written.

Near-duplicates are resolved greedily in path order: an image is dropped when it is close to an
image already *kept*, so a chain A~B~C never drops C because of an A it is far from.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Hashable

import numpy as np
import pandas as pd

from .images import ImageDecodeError, load_rgb_resized

NEAR_DUPLICATE = 2
REVIEW = 3
CONFIRM = 5.0
REVIEW_MARGIN = 3.0
THUMBNAIL = 32
_BLOCK = 512  # rows per block of the pairwise distance matrix: 512 x n uint64 stays small


@dataclass(frozen=True)
class Finding:
    index: object        # row label in the input frame
    action: str          # "dropped" or "flagged"
    reason: str
    related: str | None  # image path of the file it duplicates


def hash_ints(hashes: pd.Series) -> np.ndarray:
    return np.array([int(h, 16) for h in hashes], dtype=np.uint64)


def thumbnail(path: str | Path, size: int = THUMBNAIL) -> np.ndarray:
    """Float (size, size, 3) thumbnail with each channel's mean removed."""
    arr = np.asarray(load_rgb_resized(path, size), dtype=np.float32)
    return arr - arr.mean(axis=(0, 1))


def pixel_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def close_pairs(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs i < j with Hamming distance <= max_distance, as (i, j, d) arrays.

    Written out because the libraries that index Hamming space (BK-trees, FAISS binary indexes)
    are either unmaintained or heavy; blockwise XOR + popcount in numpy handles a 30k-image class
    in seconds."""
    n = len(hashes)
    ii, jj, dd = [], [], []
    for start in range(0, n, _BLOCK):
        block = hashes[start:start + _BLOCK]
        d = np.bitwise_count(block[:, None] ^ hashes[None, :])
        i, j = np.nonzero(d <= max_distance)
        keep = j > i + start
        ii.append(i[keep] + start), jj.append(j[keep]), dd.append(d[i[keep], j[keep]])
    if not ii:
        empty = np.array([], dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(ii), np.concatenate(jj), np.concatenate(dd).astype(np.int64)


def find_duplicates(
    df: pd.DataFrame,
    near: int = NEAR_DUPLICATE,
    review: int = REVIEW,
    confirm: float | None = CONFIRM,
    thumbnail: Callable[[Hashable], np.ndarray] | None = None,
) -> list[Finding]:
    """Findings for a frame with columns image, label, sha256, ahash. With ``confirm``,
    ``thumbnail(row_index)`` gives the image's thumbnail (see :func:`thumbnail`)."""
    if confirm is not None and thumbnail is None:
        raise ValueError("confirm needs a thumbnail(row_index) function (or pass confirm=None)")
    findings: list[Finding] = []
    dropped: set = set()
    order = df.sort_values("image", kind="stable")

    for _, grp in order.groupby("sha256", sort=False):
        if len(grp) < 2:
            continue
        labels = sorted(grp["label"].unique())
        if len(labels) > 1:
            for idx, img in zip(grp.index, grp["image"]):
                others = [p for p in grp["image"] if p != img]
                findings.append(Finding(idx, "dropped", f"identical file under different labels "
                                        f"({', '.join(labels)}): all copies dropped", others[0]))
                dropped.add(idx)
        else:
            first = grp["image"].iloc[0]
            for idx in grp.index[1:]:
                findings.append(Finding(idx, "dropped", "byte-identical duplicate", first))
                dropped.add(idx)

    if max(near, review) < 0:
        return findings
    thumb = lru_cache(maxsize=4096)(_safe(thumbnail)) if confirm is not None else None
    rest = order.loc[~order.index.isin(dropped)]
    for _, grp in rest.groupby("label", sort=True):
        if len(grp) < 2:
            continue
        i, j, d = close_pairs(hash_ints(grp["ahash"]), max(near, review))
        if len(i) == 0:
            continue
        idx = grp.index

        def diff(a: int, b: int) -> float:
            if thumb is None:
                return 0.0
            ta, tb = thumb(idx[a]), thumb(idx[b])
            return float("inf") if ta is None or tb is None else pixel_difference(ta, tb)

        # later image -> [(ahash distance, earlier image)]; a < b: a comes first in path order
        neighbours: dict[int, list[tuple[int, int]]] = {}
        for a, b, dist in zip(i.tolist(), j.tolist(), d.tolist()):
            neighbours.setdefault(b, []).append((dist, a))
        kept: set[int] = set()
        diffs: dict[tuple[int, int], float] = {}

        def cached_diff(a: int, b: int) -> float:
            if (a, b) not in diffs:
                diffs[(a, b)] = diff(a, b)
            return diffs[(a, b)]

        for pos in range(len(grp)):
            match = None
            for dist, a in sorted(neighbours.get(pos, [])):
                if dist > near or a not in kept:
                    continue
                px = cached_diff(a, pos)
                if confirm is None or px <= confirm:
                    match = (dist, px, a)
                    break
            if match:
                dist, px, a = match
                why = f"near-duplicate (average-hash distance {dist}" + (
                    f", pixel difference {px:.1f})" if confirm is not None else ")")
                findings.append(Finding(idx[pos], "dropped", why, grp["image"].iloc[a]))
            else:
                kept.add(pos)
        for b in sorted(neighbours):
            if b not in kept:
                continue
            for dist, a in sorted(neighbours[b]):
                if a not in kept:
                    continue
                if confirm is None:
                    if dist != review:
                        continue
                    why = f"possible duplicate for review (average-hash distance {dist})"
                else:
                    px = cached_diff(a, b)
                    if px > confirm + REVIEW_MARGIN:
                        continue
                    why = f"possible duplicate for review (average-hash distance {dist}, pixel difference {px:.1f})"
                findings.append(Finding(idx[b], "flagged", why, grp["image"].iloc[a]))
                break  # one review entry per image is enough
    return findings


def _safe(fn: Callable[[Hashable], np.ndarray]) -> Callable[[Hashable], np.ndarray | None]:
    def wrapped(key):
        try:
            return fn(key)
        except (ImageDecodeError, OSError):  # already checked at ingest; never crash dedup on it
            return None

    return wrapped
