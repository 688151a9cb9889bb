"""Domain knowledge: cell ontology, tolerance classes, similarity and severity matrices.

```python
from zoo.knowledge import load_ontology, load_matrix, DEFAULT_CLASSES
ont = load_ontology()
ont.canonical("NGB", dataset="matek")      # 'band_neutrophil'
load_matrix("severity", classes=DEFAULT_CLASSES)
```
The data files (ontology.yaml, tolerance.yaml, similarity.csv, severity.csv) and their rationale
(README.md) live in this folder; :func:`knowledge_files` lists them for packaging with a model.
"""

from __future__ import annotations

from pathlib import Path

from .errors import KnowledgeFileError, UnknownLabelError
from .matrices import DIAGONAL, MATRIX_KINDS, load_matrix, matrix_path
from .ontology import (
    DEFAULT_ONTOLOGY_PATH,
    GENERIC,
    KNOWLEDGE_DIR,
    CellClass,
    Lineage,
    Ontology,
    load_label_map,
    load_ontology,
    normalize_label,
)

DEFAULT_CLASSES: tuple[str, ...] = load_ontology().default_classes


def knowledge_files() -> list[Path]:
    """The packaged knowledge files (to copy next to a trained pipeline)."""
    names = ["ontology.yaml", "tolerance.yaml", "similarity.csv", "severity.csv", "README.md"]
    return [KNOWLEDGE_DIR / n for n in names if (KNOWLEDGE_DIR / n).is_file()]


__all__ = [
    "CellClass", "DEFAULT_CLASSES", "DEFAULT_ONTOLOGY_PATH", "DIAGONAL", "GENERIC", "KNOWLEDGE_DIR",
    "KnowledgeFileError", "Lineage", "MATRIX_KINDS", "Ontology", "UnknownLabelError", "knowledge_files",
    "load_label_map", "load_matrix", "load_ontology", "matrix_path", "normalize_label",
]
