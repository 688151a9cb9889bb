"""What to draw, before any pixel: class counts, maturity values, slides.

Separate from rendering so that class frequencies and maturity distributions can be checked (and
tested) for any number of cells in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from zoo.knowledge import DEFAULT_CLASSES, load_ontology

from . import config
from .scene import make_slides


@dataclass(frozen=True)
class Stage:
    """A drawable class: its lineage and its soft maturity bin [lo, hi] (None = open end)."""

    class_id: str
    lineage: str
    lo: float | None
    hi: float | None


def default_classes() -> tuple[str, ...]:
    return tuple(DEFAULT_CLASSES)


def stages(classes: Iterable[str] | None = None) -> dict[str, Stage]:
    """Lineage and maturity bin of each class, from the ontology: a ranked stage's bin runs between
    the midpoints to its neighbouring stages (so its ontology maturity is the bin centre), open
    at the lineage ends; a class alone in its lineage (blast, basophil, eosinophil) spans [0, 1]."""
    ont = load_ontology()
    classes = default_classes() if classes is None else tuple(classes)
    out = {}
    for cid in classes:
        lineage = ont.lineage(cid)
        series = ont.stages(lineage)
        lo = hi = None
        if cid in series and len(series) > 1:
            i = series.index(cid)
            mats = [ont.maturity(s) for s in series]
            lo = None if i == 0 else 0.5 * (mats[i - 1] + mats[i])
            hi = None if i == len(series) - 1 else 0.5 * (mats[i] + mats[i + 1])
        out[cid] = Stage(cid, lineage, lo, hi)
    return out


def check_arguments(**kw) -> None:
    """ValueError naming the first bad argument among those given (n_cells, img_size, seed,
    density, n_slides, difficulty, workers)."""
    def is_int(x) -> bool:
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

    def is_num(x) -> bool:
        return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)

    rules = {
        "n_cells": (lambda x: is_int(x) and x >= 1, "a positive integer"),
        "img_size": (lambda x: is_int(x) and x >= 32, "an integer >= 32 (cells are unreadable below)"),
        "seed": (lambda x: is_int(x) and x >= 0, "a non-negative integer"),
        "density": (lambda x: is_num(x) and 0.0 <= x <= 1.0,
                    "a number in [0, 1] (0 = the cell alone, no red cells or neighbours)"),
        "n_slides": (lambda x: is_int(x) and x >= 1, "a positive integer"),
        "difficulty": (lambda x: is_num(x) and 0.0 <= x <= 4.0,
                       "a number in [0, 4] (0 = crisp stage borders, 1 = default)"),
        "workers": (lambda x: is_int(x) and x >= 1, "a positive integer"),
    }
    for name, value in kw.items():
        ok, what = rules[name]
        if not ok(value):
            raise ValueError(f"{name} must be {what}, got {value!r}")


def check_classes(classes: Sequence[str] | None) -> tuple[str, ...]:
    """Validated class list (default: the 15 classes of the guide papers)."""
    if classes is None:
        return default_classes()
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    classes = tuple(classes)
    if not classes:
        raise ValueError("classes: empty list; give canonical ids, e.g. ['myelocyte', 'metamyelocyte'], "
                         "or None for the 15 default classes")
    dup = sorted({c for c in classes if classes.count(c) > 1})
    if dup:
        raise ValueError(f"classes: duplicated id(s) {', '.join(dup)}")
    bad = [c for c in classes if c not in config.MARROW_PERCENT]
    if bad:
        raise ValueError(f"classes: the synthetic generator cannot draw {', '.join(map(repr, bad))}; "
                         f"drawable classes: {', '.join(config.MARROW_PERCENT)}")
    return classes


def class_frequencies(classes: Sequence[str] | None = None) -> dict[str, float]:
    """Target share of each class: marrow frequencies (config.MARROW_PERCENT) renormalised."""
    classes = check_classes(classes)
    total = sum(config.MARROW_PERCENT[c] for c in classes)
    return {c: config.MARROW_PERCENT[c] / total for c in classes}


def class_counts(n_cells: int, classes: Sequence[str] | None = None,
                 min_fraction: float = config.MIN_FRACTION) -> dict[str, int]:
    """Exact counts summing to ``n_cells``: proportional to :func:`class_frequencies`, every class
    raised to at least max(1, floor(min_fraction * n)) cells (when n allows one per class), the
    difference taken proportionally from the others; largest-remainder rounding."""
    freqs = class_frequencies(classes)
    names = list(freqs)
    p = np.array([freqs[c] for c in names])
    floor_n = int(np.floor(min_fraction * n_cells))
    minimum = max(1, floor_n) if n_cells >= len(names) else 0
    fixed = np.zeros(len(names), bool)
    while True:  # water-filling: fix classes below the minimum, share the rest proportionally
        rest = n_cells - minimum * fixed.sum()
        quota = np.where(fixed, minimum, p / p[~fixed].sum() * rest if (~fixed).any() else 0)
        newly = (~fixed) & (quota < minimum)
        if not newly.any():
            break
        fixed |= newly
    counts = np.floor(quota).astype(int)
    order = np.argsort(-(quota - counts), kind="stable")
    counts[order[: n_cells - counts.sum()]] += 1
    return dict(zip(names, counts.tolist()))


def _sample_maturity(rng: np.random.Generator, n: int, stage: Stage, scale: float) -> np.ndarray:
    """Maturity of ``n`` cells labelled ``stage``: m ~ Uniform[0, 1] conditioned on the label, with
    P(label | m) = sigmoid((m - lo)/s) - sigmoid((m - hi)/s) (logistic stage borders, tails cut
    at 4 s). Sampling
    the label first fixes the class counts; by Bayes the maturities are exactly those of
    'uniform maturity, then a fuzzy threshold', so neighbouring stages overlap."""
    grid = np.linspace(0.0, 1.0, 4001)

    def below(edge: float | None) -> np.ndarray:  # P(m is past the border ``edge``)
        if edge is None:
            return np.zeros_like(grid)
        if scale <= 0:
            return (grid >= edge).astype(float)
        return 1 / (1 + np.exp(-(grid - edge) / scale))

    lo = np.ones_like(grid) if stage.lo is None else below(stage.lo)
    dens = np.clip(lo - below(stage.hi), 0, None)
    # cut the exponential tails at 4 s past a border: confusion with the neighbouring stage only,
    # never a "metamyelocyte" drawn as a promyelocyte
    if stage.lo is not None:
        dens[grid < stage.lo - 4 * scale] = 0
    if stage.hi is not None:
        dens[grid > stage.hi + 4 * scale] = 0
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]))])
    cdf /= cdf[-1]
    return np.interp(rng.random(n), cdf, grid)


def sample_cells(n_cells: int, seed: int = 0, classes: Sequence[str] | None = None, n_slides: int = 12,
                 difficulty: float = 1.0, density: float = 0.5) -> pd.DataFrame:
    """The cells of a synthetic dataset, without pixels: one row per cell with ``cell_index``,
    ``source_label``, ``lineage``, ``maturity``, ``group`` (slide), ``density`` (effective red-cell
    density on that slide), ``image`` and ``mask`` (paths relative to the output folder)."""
    check_arguments(n_cells=n_cells, seed=seed, n_slides=n_slides, difficulty=difficulty, density=density)
    classes = check_classes(classes)
    counts = class_counts(n_cells, classes)
    st = stages(classes)
    rng = np.random.default_rng([int(seed), 0x5A3F1E])
    scale = config.BORDER_SCALE * float(difficulty)
    labels, mats, slides = [], [], []
    for cid in classes:
        k = counts[cid]
        labels += [cid] * k
        mats.append(_sample_maturity(rng, k, st[cid], scale))
        # deal each class round-robin over the slides from a random start: every slide holds
        # every class in nearly equal numbers (group-aware folds stay stratified)
        slides.append((rng.integers(n_slides) + np.arange(k)) % n_slides)
    labels = np.array(labels, dtype=object)
    mats, slides = np.concatenate(mats), np.concatenate(slides)
    order = rng.permutation(n_cells)          # interleave classes in the cell order
    labels, mats, slides = labels[order], mats[order], slides[order]
    styles = make_slides(seed, n_slides)
    dens = np.array([min(1.0, density * styles[s].density_factor) for s in slides])
    number = {c: 0 for c in classes}
    names = []
    for cid in labels:
        names.append(f"{cid}/{cid}_{number[cid]:05d}.png")
        number[cid] += 1
    return pd.DataFrame({
        "cell_index": np.arange(n_cells),
        "image": ["images/" + n for n in names],
        "source_label": labels.astype(str),
        "group": [styles[s].slide for s in slides],
        "mask": ["masks/" + n for n in names],
        "maturity": np.round(mats, 6),
        "lineage": [st[c].lineage for c in labels],
        "density": np.round(dens, 4),
    })


def neighbour_pool(difficulty: float = 1.0) -> tuple[tuple[str, float, float, float], ...]:
    """(lineage, probability, maturity range) of the cells that appear as partial neighbours:
    all 15 default classes at marrow frequencies, whatever subset is being generated."""
    freqs = class_frequencies(None)
    st = stages(tuple(freqs))
    pad = 2 * config.BORDER_SCALE * difficulty
    return tuple((s.lineage, freqs[c], max(0.0, (s.lo if s.lo is not None else 0.0) - pad),
                  min(1.0, (s.hi if s.hi is not None else 1.0) + pad)) for c, s in st.items())
