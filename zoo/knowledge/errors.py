"""Errors raised by the knowledge layer. Both are ValueErrors so CLI code can catch one type."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


class KnowledgeFileError(ValueError):
    """A knowledge file (ontology, tolerance, matrix, label map) is malformed.

    The message always names the file and, where there is one, the offending entry."""

    def __init__(self, path: str | Path | None, message: str, entry: str | None = None):
        self.path = Path(path) if path is not None else None
        self.entry = entry
        where = str(self.path) if self.path is not None else "<in-memory>"
        if entry is not None:
            where += f", entry {entry}"
        super().__init__(f"{where}: {message}")


class UnknownLabelError(ValueError):
    """Some source labels map to no canonical class. ``.unknown`` maps each label to its count."""

    def __init__(self, unknown: Mapping[str, int | None], dataset: str | None, hints: Mapping[str, str],
                 known_datasets: tuple[str, ...]):
        self.unknown = dict(unknown)
        self.dataset = dataset
        listed = ", ".join(
            f"{label!r}" + (f" ({n} item{'s' if n != 1 else ''})" if n is not None else "")
            for label, n in self.unknown.items()
        )
        where = f" for dataset {dataset!r}" if dataset else ""
        lines = [f"{len(self.unknown)} label(s) not in the cell ontology{where}: {listed}."]
        if dataset and dataset not in known_datasets:
            lines.append(f"Note: the ontology has no aliases for dataset {dataset!r} "
                         f"(datasets with aliases: {', '.join(known_datasets)}).")
        for label, hint in hints.items():
            lines.append(f"Hint: {label!r} {hint}.")
        example = next(iter(self.unknown), "MY_LABEL")
        lines.append(
            "Fix: pass a label map YAML (label_map=path) with one line `source_label: canonical_id` "
            f"per label, e.g.\n    {example}: band_neutrophil\n"
            "or add the label as an alias of the right class in zoo/knowledge/ontology.yaml "
            "(under `aliases: {<dataset>: [...]}`). Canonical ids: see `zoo.knowledge.load_ontology().ids`."
        )
        super().__init__("\n".join(lines))
