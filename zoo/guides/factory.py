"""The 14 guides of paper 000 behind one registry, resolved like timm's ``create_model``.

Names: ``<kk|fr|drl>_<sim|sev>[_mat]`` (layout algorithm, expert matrix, maturity edges),
``circular`` (the predecessor paper's manual guide) and ``random``.

Classes the expert matrices do not cover (e.g. PBC's unstaged ``erythroblast`` and ``platelet``)
are handled by ``unknown``:

* ``"error"`` (default): raise, naming them and the two alternatives below.
* ``"drop"``: the guide covers only the classes the matrices know; the caller must restrict or
  relabel its dataset to ``guide.classes``.
* ``"place"``: they join the class graph as extra nodes whose only edges are to classes of the
  same ontology lineage present in the guide (the one piece of knowledge we do have about them);
  with no such class they are isolated nodes, which every layout places at a finite, distinct
  position like any other isolated class.

``circular`` and ``random`` need no matrix, so every ontology class is fine for them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from zoo.knowledge import DEFAULT_CLASSES, load_matrix, load_ontology
from zoo.knowledge.ontology import Ontology
from zoo.registry import Registry

from . import layouts
from .adjacency import edges as adjacency_edges
from .adjacency import knowledge_adjacency, same_lineage_mask
from .guide import Guide

log = logging.getLogger(__name__)

GUIDES: Registry = Registry("guide")

MATRICES = {"sim": "similarity", "sev": "severity"}
UNKNOWN_POLICIES = ("error", "drop", "place")


def _resolve_classes(classes: Sequence[str] | None, ont: Ontology) -> list[str]:
    out = list(DEFAULT_CLASSES if classes is None else classes)
    if not out:
        raise ValueError("a guide needs at least one class")
    not_canonical = [c for c in out if c not in ont]
    if not_canonical:
        raise KeyError(f"not canonical class ids: {not_canonical}. Map dataset labels first "
                       "(zoo.knowledge.load_ontology().canonical(label, dataset=...)).")
    dup = sorted({c for c in out if out.count(c) > 1})
    if dup:
        raise ValueError(f"classes repeated: {dup}")
    return out


def _graph_guide(*, name: str, layout: str, matrix: str, maturity: bool, classes=None, seed: int = 0,
                 threshold: float = 0.5, unknown: str = "error", ontology: Ontology | None = None) -> Guide:
    if unknown not in UNKNOWN_POLICIES:
        raise ValueError(f"unknown={unknown!r}: use one of {', '.join(UNKNOWN_POLICIES)}")
    ont = ontology or load_ontology()
    wanted = _resolve_classes(classes, ont)
    kind = MATRICES[matrix]
    covered = set(load_matrix(kind).index)
    extra = [c for c in wanted if c not in covered]
    if extra and unknown == "error":
        raise ValueError(
            f"guide {name!r}: the {kind} matrix has no ratings for {extra}. Either restrict the dataset "
            f"to classes it covers ({', '.join(c for c in wanted if c in covered) or 'none of yours'}), "
            "map those labels to covered classes, or pass unknown='drop' (CLI: --unknown drop) to leave them "
            "out of the guide / unknown='place' to add them as nodes tied only to their ontology lineage.")
    if unknown == "drop":
        if extra:
            log.warning("guide %s: dropping classes the %s matrix does not cover: %s", name, kind, extra)
        wanted = [c for c in wanted if c in covered]
        extra = []
        if not wanted:
            raise ValueError(f"guide {name!r}: none of the requested classes is in the {kind} matrix")
    known = [c for c in wanted if c in covered]
    adj = knowledge_adjacency(kind, known, maturity=maturity, threshold=threshold, ontology=ont) if known else None
    full = pd.DataFrame(0, index=pd.Index(wanted, name="class"), columns=pd.Index(wanted, name="class"))
    if adj is not None:
        full.loc[known, known] = adj.to_numpy()
    if extra:
        lineage = same_lineage_mask(wanted, ont)
        is_extra = np.array([c in extra for c in wanted])
        tie = lineage & (is_extra[:, None] | is_extra[None, :])
        values = full.to_numpy().copy()  # pandas may hand out a read-only view
        values[tie] = 1
        full = pd.DataFrame(values, index=full.index, columns=full.columns)
    coords = layouts.finalize(layouts.GRAPH_LAYOUTS[layout](full, seed))
    return Guide(name, wanted, coords, adjacency_edges(full),
                 dict(layout=layout, matrix=kind, maturity=maturity, threshold=threshold, seed=seed,
                      placed=extra))


def _baseline_guide(*, name: str, fn, classes=None, seed: int = 0, threshold: float = 0.5,
                    unknown: str = "error", ontology: Ontology | None = None) -> Guide:
    ont = ontology or load_ontology()
    wanted = _resolve_classes(classes, ont)
    coords = layouts.finalize(fn(wanted, seed=seed, ontology=ont))
    return Guide(name, wanted, coords, [], dict(layout=name, seed=seed))


for _layout in ("kk", "fr", "drl"):
    for _matrix in ("sim", "sev"):
        for _mat in (False, True):
            _name = f"{_layout}_{_matrix}" + ("_mat" if _mat else "")
            GUIDES.add(_name, functools.partial(_graph_guide, name=_name, layout=_layout, matrix=_matrix,
                                                maturity=_mat),
                       layout=_layout, matrix=MATRICES[_matrix], maturity=_mat)
GUIDES.add("circular", functools.partial(_baseline_guide, name="circular", fn=layouts.circular),
           layout="circular", matrix=None, maturity=True)
GUIDES.add("random", functools.partial(_baseline_guide, name="random", fn=layouts.random_guide),
           layout="random", matrix=None, maturity=False)


def create_guide(name: str, classes: Sequence[str] | None = None, seed: int = 0, threshold: float = 0.5,
                 unknown: str = "error", ontology: Ontology | None = None) -> Guide:
    """Build the guide ``name`` for ``classes`` (default: the 15 classes of the papers).

    ``seed`` drives FR's random start, DrL and the random guide (KK and circular are
    deterministic). ``threshold`` is the rounding threshold of the adjacency (paper: 0.5).
    Unknown names raise :class:`zoo.registry.UnknownNameError` listing the 14 valid ones."""
    return GUIDES.get(name)(classes=classes, seed=seed, threshold=threshold, unknown=unknown,
                            ontology=ontology)


def describe(name: str) -> str:
    m = GUIDES.meta(name)
    if m["matrix"] is None:
        return {"circular": "manual circular guide (lineages around a circle, maturity order)",
                "random": "random points (seeded)"}[name]
    algo = {"kk": "Kamada-Kawai", "fr": "Fruchterman-Reingold", "drl": "DrL"}[m["layout"]]
    return f"{algo} layout of the {m['matrix']} graph" + (" + same-lineage edges" if m["maturity"] else "")


def resolve_guide(guide: "Guide | str", classes: Sequence[str] | None = None, *, seed: int = 0,
                  unknown: str = "error") -> Guide:
    """A guide whose row ``i`` belongs to label index ``i``: what the guided losses need.

    ``guide`` is a :class:`Guide` (restricted/reordered to ``classes`` when given: every class
    must be in it) or a registry name (built for ``classes``). Losses call this so the label
    indices of a dataset and the guide rows always agree."""
    if isinstance(guide, str):
        return create_guide(guide, classes=classes, seed=seed, unknown=unknown)
    if not isinstance(guide, Guide):
        raise TypeError(f"guide must be a zoo.guides.Guide or a guide name, got {type(guide).__name__}")
    if classes is None or list(classes) == guide.classes:
        return guide
    missing = [c for c in classes if c not in guide.classes]
    if missing:
        raise ValueError(f"guide {guide.name!r} has no point for {missing}; build it for these classes "
                         f"with create_guide({guide.name!r}, classes=..., unknown='place')")
    return guide.restrict(list(classes))
