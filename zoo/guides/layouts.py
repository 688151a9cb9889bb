"""2-D layouts of the class graph: Kamada-Kawai, Fruchterman-Reingold, DrL, circular, random.

Every layout returns a (K, 2) float array in the order of the classes it was given; the guide
factory then passes it through :func:`finalize` (distinct points, centred at the mean, max
Euclidean norm 1) so all 14 guides live on the same scale.

Disconnected graphs are the normal case here (with the packaged matrices, basophils and
eosinophils are isolated in the similarity graph and the severity graph has seven components),
and none of the three algorithms copes with them as-is: networkx's KK fills unreachable pairs
with a distance of 1e6 (isolated classes fly off, the rest collapses to a point on rescaling),
networkx's FR keeps pushing isolated nodes outward until the connected part is a blob, and DrL
puts components hundreds of units apart, each a few units wide. So all three run the same way
(:func:`layout_components`): each connected component is laid out on its own (seeded), scaled to
a common unit (mean edge length 1), and the components are packed side by side with one edge
length between them (:func:`pack_components`). Isolated classes thus sit one "non-edge" away
from the others instead of at an arbitrary distance.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import igraph
import networkx as nx
import numpy as np
import pandas as pd

from zoo.knowledge import load_ontology
from zoo.knowledge.ontology import Ontology

#: Minimum distance between two classes of a finished (normalized) guide.
MIN_SEPARATION = 0.02


# -- graph helpers ---------------------------------------------------------------------------

def graph_from_adjacency(adjacency: pd.DataFrame) -> nx.Graph:
    """Undirected networkx graph with nodes 0..K-1 (all classes, isolated ones included)."""
    a = np.asarray(adjacency.to_numpy())
    if a.shape[0] != a.shape[1] or not np.array_equal(a, a.T):
        raise ValueError("layouts need a square, symmetric adjacency matrix (see zoo.guides.adjacency)")
    g = nx.Graph()
    g.add_nodes_from(range(a.shape[0]))
    i, j = np.nonzero(np.triu(a, k=1))
    g.add_edges_from(zip(i.tolist(), j.tolist()))
    return g


def _components(g: nx.Graph) -> list[list[int]]:
    """Connected components, largest first, ties by lowest class index: deterministic order."""
    comps = [sorted(c) for c in nx.connected_components(g)]
    return sorted(comps, key=lambda c: (-len(c), c[0]))


# -- the three graph layouts ----------------------------------------------------------------------
# Each takes one CONNECTED graph with nodes 0..n-1 (n >= 3) and a seed, returns (n, 2).

def _kamada_kawai(g: nx.Graph, seed: int) -> np.ndarray:
    # KK is deterministic: networkx starts it from the circular layout and runs a deterministic
    # optimizer, so the seed has no effect.
    pos = nx.kamada_kawai_layout(g)
    return np.array([pos[n] for n in range(g.number_of_nodes())], dtype=float)


def _fruchterman_reingold(g: nx.Graph, seed: int) -> np.ndarray:
    # The paper: "the required initial embedding ... is produced randomly" -> seeded uniform start.
    n = g.number_of_nodes()
    start = np.random.default_rng(seed).uniform(0.0, 1.0, size=(n, 2))
    pos = nx.spring_layout(g, pos={i: start[i] for i in range(n)}, seed=seed, method="force", iterations=200)
    return np.array([pos[i] for i in range(n)], dtype=float)


def _drl(g: nx.Graph, seed: int) -> np.ndarray:
    # igraph draws its random numbers from a Python RNG object (the `random` module by default);
    # a private seeded Random makes DrL reproducible without touching the global state, and the
    # explicit start matrix pins the initial layout too.
    n = g.number_of_nodes()
    ig = igraph.Graph(n=n, edges=list(g.edges()))
    start = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n, 2)).tolist()
    igraph.set_random_number_generator(random.Random(seed))
    try:
        coords = ig.layout_drl(seed=start, dim=2).coords
    finally:
        igraph.set_random_number_generator(random)
    return np.asarray(coords, dtype=float)


def layout_components(adjacency: pd.DataFrame, seed: int,
                      algorithm: Callable[[nx.Graph, int], np.ndarray]) -> np.ndarray:
    """Lay out each connected component with ``algorithm``, unit mean edge length, then pack."""
    g = graph_from_adjacency(adjacency)
    comps = _components(g)
    pieces = []
    for comp in comps:
        if len(comp) == 1:
            xy = np.zeros((1, 2))
        elif len(comp) == 2:  # nothing to optimise: one edge of unit length
            xy = np.array([[-0.5, 0.0], [0.5, 0.0]])
        else:
            sub = nx.convert_node_labels_to_integers(g.subgraph(comp), ordering="sorted")
            xy = algorithm(sub, seed)
            xy = xy - xy.mean(axis=0)
            lengths = [np.linalg.norm(xy[a] - xy[b]) for a, b in sub.edges()]
            unit = float(np.mean(lengths))
            xy = xy / unit if unit > 0 else xy
        pieces.append(xy)
    out = np.zeros((g.number_of_nodes(), 2))
    for comp, xy in zip(comps, pack_components(pieces)):
        out[comp] = xy
    return out


def kamada_kawai(adjacency: pd.DataFrame, seed: int = 0) -> np.ndarray:
    """networkx Kamada-Kawai per component (deterministic; ``seed`` unused)."""
    return layout_components(adjacency, seed, _kamada_kawai)


def fruchterman_reingold(adjacency: pd.DataFrame, seed: int = 0) -> np.ndarray:
    """networkx Fruchterman-Reingold ("force") per component, from a seeded random start."""
    return layout_components(adjacency, seed, _fruchterman_reingold)


def drl(adjacency: pd.DataFrame, seed: int = 0) -> np.ndarray:
    """python-igraph DrL per component, seeded."""
    return layout_components(adjacency, seed, _drl)


def pack_components(layouts: Sequence[np.ndarray], gap: float = 1.0) -> list[np.ndarray]:
    """Translate component layouts (each centred at 0) so their bounding discs do not overlap.

    Greedy, deterministic: the first (largest) component stays at the origin, each next one goes
    to the first point of an outward spiral whose disc keeps ``gap`` (one edge length) from every
    disc placed so far. Written here because neither networkx nor python-igraph exposes packing
    of separately computed layouts (igraph's DLA merge is randomized and not in the Python API)."""
    placed: list[tuple[np.ndarray, float]] = []
    out = []
    for xy in layouts:
        xy = np.asarray(xy, dtype=float)
        r = float(np.linalg.norm(xy, axis=1).max()) if len(xy) else 0.0
        if not placed:
            centre = np.zeros(2)
        else:
            step, t = 0.25, 0.0
            while True:
                # Archimedean spiral (radius grows `step` per radian): finds the tight spots first.
                centre = (t * step) * np.array([math.cos(t), math.sin(t)])
                if all(np.linalg.norm(centre - c) >= r + rc + gap for c, rc in placed):
                    break
                t += 0.1
        placed.append((centre, r))
        out.append(xy + centre)
    return out


# -- the two baselines ----------------------------------------------------------------------------

def circular(classes: Sequence[str], seed: int = 0, ontology: Ontology | None = None) -> np.ndarray:
    """Manual circular guide of the predecessor paper (Gräbel et al. 2021), reconstructed.

    Lineages sit around the unit circle in the ontology's lineage order, each on its own arc,
    its stages along the arc in maturity order (unranked classes after the ranked ones), one
    empty slot between lineages. The lineage just before the progenitor (blast) lineage runs
    mature -> immature so that the blast sits between the least mature stages it precedes
    (promyelocyte and proerythroblast with the default classes), where its visual similarity is.
    The exact coordinates of the original are not published in our sources; this keeps its
    stated principle (lineages around a circle in maturity order). ``seed`` is unused."""
    ont = ontology or load_ontology()
    ordered = ont.order(classes)
    lineages: list[str] = []
    groups: dict[str, list[str]] = {}
    for c in ordered:
        lin = ont.lineage(c)
        if lin not in groups:
            lineages.append(lin)
            groups[lin] = []
        groups[lin].append(c)
    progenitors = [lin for lin in lineages if ont.lineages[lin].progenitor_of]
    if progenitors:
        before = lineages.index(progenitors[0]) - 1
        if before >= 0:
            groups[lineages[before]].reverse()
    slots: list[str | None] = []
    for lin in lineages:
        slots.extend(groups[lin])
        if len(lineages) > 1:
            slots.append(None)  # gap between lineages
    angles = {c: 2 * math.pi * i / len(slots) for i, c in enumerate(slots) if c is not None}
    return np.array([[math.cos(angles[c]), math.sin(angles[c])] for c in classes], dtype=float)


def random_guide(classes: Sequence[str], seed: int = 0, ontology: Ontology | None = None) -> np.ndarray:
    """Uniform random points in the unit square, seeded (the paper's random baseline)."""
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=(len(classes), 2))


# -- normalization -----------------------------------------------------------------------------

def normalize(coords: np.ndarray) -> np.ndarray:
    """Centre at the mean and scale so the farthest point has Euclidean norm 1."""
    xy = np.asarray(coords, dtype=float)
    if not np.isfinite(xy).all():
        raise ValueError("layout produced non-finite coordinates")
    xy = xy - xy.mean(axis=0)
    r = np.linalg.norm(xy, axis=1).max() if len(xy) else 0.0
    return xy / r if r > 0 else xy


def separate(coords: np.ndarray, min_dist: float = MIN_SEPARATION, max_rounds: int = 20) -> np.ndarray:
    """Spread groups of (near-)coincident points on a small circle around their centroid.

    Deterministic (the group's members go around the circle in class order), so equal inputs
    give equal guides. Layouts collapse classes with identical neighbourhoods (e.g. two isolated
    classes in FR, or a 2-node component that DrL contracts)."""
    xy = np.array(coords, dtype=float)
    k = len(xy)
    for _ in range(max_rounds):
        d = np.linalg.norm(xy[:, None] - xy[None], axis=2)
        close = (d < min_dist) & ~np.eye(k, dtype=bool)
        if not close.any():
            break
        g = nx.Graph()
        g.add_nodes_from(range(k))
        g.add_edges_from(zip(*np.nonzero(np.triu(close, 1))))
        for comp in sorted((sorted(c) for c in nx.connected_components(g) if len(c) > 1)):
            centre = xy[comp].mean(axis=0)
            n = len(comp)
            radius = min_dist / (2 * math.sin(math.pi / n)) * 1.01  # neighbours on the circle min_dist apart
            for m, idx in enumerate(comp):
                a = 2 * math.pi * m / n + 0.5  # offset: avoid axis-aligned ties with other groups
                xy[idx] = centre + radius * np.array([math.cos(a), math.sin(a)])
    return xy


def finalize(coords: np.ndarray, min_dist: float = MIN_SEPARATION) -> np.ndarray:
    """normalize -> separate coincident points -> normalize again (separation can grow the radius)."""
    xy = normalize(coords)
    if len(xy) > 1:
        xy = normalize(separate(xy, min_dist * 1.05))
    return xy


GraphLayout = Callable[[pd.DataFrame, int], np.ndarray]
GRAPH_LAYOUTS: dict[str, GraphLayout] = {"kk": kamada_kawai, "fr": fruchterman_reingold, "drl": drl}
