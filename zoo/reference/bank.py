"""Reference banks: a labelled, deduplicated set of cells embedded in the reduced space.

For a query cell (``003_*.txt`` §4.6):
* ``method="mse"``: the ``k`` (8) bank cells with the smallest mean squared error to the query;
* ``method="som"``: the cells of the query's SOM node first (smallest quantization error to the
  node first), then those of the nearest nodes by grid distance, until ``k`` are found;
* ``label_distribution``: label shares among the nearest ``n`` (100) — the thesis's suggested soft
  second opinion.

Near-duplicates of the query (average-hash Hamming distance <= ``near_distance``, the dedup rule
of ingest; the manifest's ``ahash`` column) and the query itself (same id) never come back.
The bank saves as ``bank.npz`` (``allow_pickle=False``) + ``bank.json`` (+ ``som/`` when built).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from zoo.som import BatchSOM

NEAR_DUPLICATE = 2   # same threshold as zoo.data.dedup.NEAR_DUPLICATE
METHODS = ("mse", "som")


def ahash_ints(hashes: Sequence[str | None]) -> np.ndarray:
    """Hex average hashes -> uint64 (missing ones -> 0; :func:`ahash_valid` masks them out so a
    missing hash never matches anything)."""
    vals = np.zeros(len(hashes), dtype=np.uint64)
    for i, h in enumerate(hashes):
        if h is not None and isinstance(h, str) and h:
            vals[i] = np.uint64(int(h, 16))
    return vals


def ahash_valid(hashes: Sequence[str | None]) -> np.ndarray:
    return np.array([isinstance(h, str) and bool(h) for h in hashes], dtype=bool)


def image_ahash(image: Any) -> str:
    """The average hash (imagehash, 8x8) of an image given as anything ``decode_image`` accepts."""
    import imagehash

    from zoo.data.images import decode_image

    return str(imagehash.average_hash(decode_image(image)))


@dataclass
class QueryResult:
    indices: np.ndarray     # (q, k) bank row positions, -1 where fewer than k were allowed
    distances: np.ndarray   # (q, k) MSE in the reduced space (nan where index is -1)


class ReferenceBank:
    """Reduced vectors, labels, ids (manifest row ids or paths), average hashes; optional SOM.

    Build with :meth:`build`; the constructor only stores arrays."""

    def __init__(self, vectors: np.ndarray, labels: Sequence[str], ids: Sequence[str],
                 ahash: Sequence[str | None] | None = None, paths: Sequence[str] | None = None,
                 som: BatchSOM | None = None, near_distance: int = NEAR_DUPLICATE):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n = len(self.vectors)
        self.labels = np.asarray([str(v) for v in labels])
        self.ids = np.asarray([str(v) for v in ids])
        self.ahash = np.asarray(["" if h is None else str(h) for h in (ahash if ahash is not None else [""] * n)])
        self.paths = np.asarray([str(p) for p in (paths if paths is not None else self.ids)])
        for name, arr in (("labels", self.labels), ("ids", self.ids), ("ahash", self.ahash), ("paths", self.paths)):
            if len(arr) != n:
                raise ValueError(f"bank {name} has {len(arr)} entries for {n} vectors")
        if len(set(self.ids.tolist())) != n:
            raise ValueError("bank ids must be unique (use manifest row ids or image paths)")
        self.near_distance = int(near_distance)
        self._hash_int = ahash_ints(self.ahash)
        self._hash_ok = ahash_valid(self.ahash)
        self.som = None
        if som is not None:
            self.attach_som(som)

    @classmethod
    def build(cls, vectors, labels, ids, ahash=None, paths=None, dedup: bool = True,
              near_distance: int = NEAR_DUPLICATE, som: BatchSOM | None = None) -> "ReferenceBank":
        """A bank from labelled rows; with ``dedup``, near-duplicates *within a class* (ahash
        distance <= ``near_distance``) keep only their first row, like ingest's dedup."""
        vectors = np.asarray(vectors, dtype=np.float32)
        keep = np.ones(len(vectors), dtype=bool)
        if dedup and ahash is not None:
            from zoo.data.dedup import close_pairs

            labels_arr = np.asarray([str(v) for v in labels])
            ok = ahash_valid(ahash)
            hashes = ahash_ints(ahash)
            for lab in np.unique(labels_arr):
                rows = np.flatnonzero((labels_arr == lab) & ok)
                i, j, _ = close_pairs(hashes[rows], near_distance)
                for a, b in sorted(zip(i.tolist(), j.tolist())):
                    if keep[rows[a]]:
                        keep[rows[b]] = False
        sel = np.flatnonzero(keep)

        def pick(seq):
            return None if seq is None else [seq[i] for i in sel]

        return cls(vectors[sel], pick(list(labels)), pick(list(ids)), pick(list(ahash) if ahash is not None else None),
                   pick(list(paths) if paths is not None else None), som=som, near_distance=near_distance)

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels.tolist()))

    # -- SOM --------------------------------------------------------------------------------
    def attach_som(self, som: BatchSOM) -> None:
        """Map the bank on a fitted SOM: node and quantization error of every cell."""
        self.som = som
        self.node = som.predict(self.vectors) if len(self) else np.zeros(0, np.int64)
        self.qerr = som.quantization_errors(self.vectors) if len(self) else np.zeros(0, np.float32)

    def node_members(self, node: int) -> np.ndarray:
        """Bank positions mapped to ``node`` (flat index), closest to the prototype first."""
        if self.som is None:
            raise RuntimeError("this bank has no SOM: build it with som= or attach_som()")
        rows = np.flatnonzero(self.node == int(node))
        return rows[np.argsort(self.qerr[rows], kind="stable")]

    # -- queries ----------------------------------------------------------------------------
    def _allowed(self, q_hash: str | None, q_id: str | None) -> np.ndarray:
        allowed = np.ones(len(self), dtype=bool)
        if q_hash:
            d = np.bitwise_count(self._hash_int ^ np.uint64(int(q_hash, 16)))
            allowed &= ~(self._hash_ok & (d <= self.near_distance))
        if q_id is not None:
            allowed &= self.ids != str(q_id)
        return allowed

    def mse(self, queries: np.ndarray) -> np.ndarray:
        """(q, n) mean squared error between queries and every bank vector."""
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.vectors.shape[1]:
            raise ValueError(f"queries must be (n, {self.vectors.shape[1]}), got shape {q.shape}")
        d = (q * q).sum(1)[:, None] - 2.0 * q @ self.vectors.T + (self.vectors ** 2).sum(1)[None, :]
        return np.maximum(d, 0.0) / q.shape[1]

    def query(self, queries: np.ndarray, ahashes: Sequence[str | None] | None = None,
              ids: Sequence[str | None] | None = None, k: int = 8, method: str = "mse") -> QueryResult:
        """The ``k`` references of every query row (see the module docstring)."""
        if method not in METHODS:
            raise ValueError(f"unknown reference method {method!r}; valid: {', '.join(METHODS)}")
        q = np.asarray(queries, dtype=np.float32)
        nq = len(q)
        ahashes = list(ahashes) if ahashes is not None else [None] * nq
        ids = list(ids) if ids is not None else [None] * nq
        out_i = np.full((nq, k), -1, dtype=np.int64)
        out_d = np.full((nq, k), np.nan, dtype=np.float32)
        if nq == 0 or len(self) == 0:
            return QueryResult(out_i, out_d)
        if method == "som" and self.som is None:
            raise RuntimeError("method='som' needs a bank with a SOM (build it with som=)")
        for s in range(0, nq, 256):
            d = self.mse(q[s:s + 256])
            q_nodes = self.som.predict(q[s:s + 256]) if method == "som" else None
            for r in range(len(d)):
                allowed = self._allowed(ahashes[s + r], ids[s + r])
                if method == "mse":
                    cand = np.flatnonzero(allowed)
                    order = cand[np.argsort(d[r, cand], kind="stable")[:k]]
                else:
                    order = self._som_order(int(q_nodes[r]), allowed, k)
                out_i[s + r, :len(order)] = order
                out_d[s + r, :len(order)] = d[r, order]
        return QueryResult(out_i, out_d)

    def _som_order(self, node: int, allowed: np.ndarray, k: int) -> np.ndarray:
        cols = self.som.weights_.shape[1]
        qr, qc = divmod(node, cols)
        cand = np.flatnonzero(allowed)
        nr, nc = np.divmod(self.node[cand], cols)
        grid = np.hypot(nr - qr, nc - qc)
        # nearest node first, then smallest quantization error to its own node
        order = np.lexsort((self.qerr[cand], grid))
        return cand[order[:k]]

    def label_distribution(self, queries: np.ndarray, ahashes=None, ids=None, n: int = 100) -> list[dict[str, float]]:
        """Label shares among the ``n`` nearest allowed bank cells of every query."""
        res = self.query(queries, ahashes, ids, k=n, method="mse")
        out = []
        for row in res.indices:
            labs = self.labels[row[row >= 0]]
            vals, counts = np.unique(labs, return_counts=True)
            out.append({str(v): float(c) / max(len(labs), 1) for v, c in zip(vals, counts)})
        return out

    def vote(self, result: QueryResult) -> tuple[list[str | None], np.ndarray]:
        """kNN vote over each query's references: majority label (ties: the label whose nearest
        reference is closer) and its share of the references as confidence."""
        labels, conf = [], np.zeros(len(result.indices), dtype=np.float64)
        for r, row in enumerate(result.indices):
            valid = row[row >= 0]
            if len(valid) == 0:
                labels.append(None)
                continue
            labs = self.labels[valid]
            uniq, counts = np.unique(labs, return_counts=True)
            best = counts.max()
            tied = set(uniq[counts == best].tolist())
            winner = next(lab for lab in labs if lab in tied)  # references are in distance order
            labels.append(str(winner))
            conf[r] = best / len(valid)
        return labels, conf

    # -- persistence ------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {"vectors": self.vectors, "labels": self.labels, "ids": self.ids, "ahash": self.ahash,
                  "paths": self.paths}
        if self.som is not None:
            arrays.update(node=self.node, qerr=self.qerr)
            self.som.save(directory / "som")
        np.savez(directory / "bank.npz", **arrays)
        (directory / "bank.json").write_text(json.dumps(
            {"n": len(self), "dim": int(self.vectors.shape[1]), "near_distance": self.near_distance,
             "has_som": self.som is not None, "classes": self.classes}, indent=2))

    @classmethod
    def load(cls, directory: str | Path, device: str = "auto") -> "ReferenceBank":
        directory = Path(directory)
        if not (directory / "bank.npz").exists():
            raise FileNotFoundError(f"no bank.npz in {directory}: not a saved reference bank")
        meta = json.loads((directory / "bank.json").read_text())
        with np.load(directory / "bank.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        bank = cls(arrays["vectors"], arrays["labels"], arrays["ids"], arrays["ahash"], arrays["paths"],
                   near_distance=meta["near_distance"])
        if meta.get("has_som"):
            bank.som = BatchSOM.load(directory / "som", device=device)
            bank.node, bank.qerr = arrays["node"], arrays["qerr"]
        return bank
