"""Expert matrices over cell classes: visual similarity and misclassification severity.

Both are ``true x predicted`` integer matrices stored as CSV (first column = true class id,
header row = predicted class ids). Off-diagonal values are 1..5. Diagonal rule (see README):
similarity 5 (a class is maximally similar to itself), severity 0 (a correct call has no
impact), so that MCS = sum(S * C) / n over the whole confusion matrix needs no special case.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import KnowledgeFileError
from .ontology import KNOWLEDGE_DIR, Ontology, load_ontology

MATRIX_KINDS = ("similarity", "severity")
VALUE_RANGE = (1, 5)
DIAGONAL = {"similarity": 5, "severity": 0}


def matrix_path(kind: str) -> Path:
    _check_kind(kind)
    return KNOWLEDGE_DIR / f"{kind}.csv"


def _check_kind(kind: str) -> None:
    if kind not in MATRIX_KINDS:
        raise ValueError(f"unknown matrix kind {kind!r}; valid kinds: {', '.join(MATRIX_KINDS)}")


def _read(kind: str, path: Path, ontology: Ontology) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, index_col=0, dtype=str, skipinitialspace=True)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise KnowledgeFileError(path, f"cannot read {kind} matrix CSV: {exc}") from exc
    df.index = df.index.map(lambda x: str(x).strip())
    df.columns = [str(c).strip() for c in df.columns]
    rows, cols = list(df.index), list(df.columns)

    for axis, labels in (("row", rows), ("column", cols)):
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise KnowledgeFileError(path, f"{axis} ids repeated: {dup}")
    if len(rows) != len(cols):
        raise KnowledgeFileError(path, f"matrix must be square: {len(rows)} rows x {len(cols)} columns")
    if set(rows) != set(cols):
        raise KnowledgeFileError(
            path, f"row and column ids differ: only in rows {sorted(set(rows) - set(cols))}, "
                  f"only in columns {sorted(set(cols) - set(rows))}")
    unknown = [x for x in rows if x not in ontology]
    if unknown:
        raise KnowledgeFileError(path, f"ids unknown to the ontology: {unknown} (add them to ontology.yaml "
                                       "or fix the spelling)")
    df = df.loc[rows, rows]

    lo, hi = VALUE_RANGE
    values = np.zeros(df.shape, dtype=np.int64)
    for i, t in enumerate(rows):
        for j, p in enumerate(rows):
            cell = df.iat[i, j]
            entry = f"row {t!r}, column {p!r}"
            try:
                v = float(cell)
                if not v.is_integer():
                    raise ValueError
            except (TypeError, ValueError):
                raise KnowledgeFileError(path, f"value {cell!r} is not an integer", entry=entry) from None
            v = int(v)
            if i == j:
                if v != DIAGONAL[kind]:
                    raise KnowledgeFileError(path, f"diagonal of the {kind} matrix must be {DIAGONAL[kind]}, "
                                                   f"got {v}", entry=entry)
            elif not lo <= v <= hi:
                raise KnowledgeFileError(path, f"value {v} outside {lo}..{hi}", entry=entry)
            values[i, j] = v
    out = pd.DataFrame(values, index=pd.Index(rows, name="true"), columns=pd.Index(rows, name="predicted"))
    return out


def load_matrix(
    kind: str,
    classes: Sequence[str] | None = None,
    path: str | Path | None = None,
    ontology: Ontology | None = None,
) -> pd.DataFrame:
    """Load the ``similarity`` or ``severity`` matrix as an int DataFrame (index = true class,
    columns = predicted class), validated; restricted to ``classes`` in that order if given."""
    _check_kind(kind)
    path = Path(path) if path is not None else matrix_path(kind)
    df = _read(kind, path, ontology or load_ontology())
    if classes is None:
        return df
    classes = list(classes)
    missing = [c for c in classes if c not in df.index]
    if missing:
        raise KeyError(f"the {kind} matrix {path} has no row/column for {missing}; it covers "
                       f"{', '.join(df.index)}. Restrict `classes` to those ids or extend the CSV.")
    return df.loc[classes, classes]
