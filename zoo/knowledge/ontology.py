"""The cell ontology: canonical class ids, lineages, maturity, dataset aliases, tolerance pairs.

Loaded from ``ontology.yaml`` (+ ``tolerance.yaml`` beside it) and validated on load; every
error names the file and the entry. The YAML files themselves document the biology; this
module only enforces their structure and answers questions about it.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import yaml

from .errors import KnowledgeFileError, UnknownLabelError

KNOWLEDGE_DIR = Path(__file__).resolve().parent
DEFAULT_ONTOLOGY_PATH = KNOWLEDGE_DIR / "ontology.yaml"
TOLERANCE_FILENAME = "tolerance.yaml"
GENERIC = "generic"  # alias key that applies to every dataset

_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_SEP_RE = re.compile(r"[\s_\-]+")


def normalize_label(label: Any) -> str:
    """Key used for alias matching: case-folded, runs of spaces/'-'/'_' collapsed to '_'."""
    return _SEP_RE.sub("_", str(label).strip().casefold()).strip("_")


def _is_missing(label: Any) -> bool:
    """None, NaN, pd.NA, NaT: what a half-filled label column holds."""
    if label is None:
        return True
    if isinstance(label, (str, bytes, int)):
        return False
    try:
        return bool(pd.isna(label))
    except (TypeError, ValueError):  # array-like: not a missing scalar
        return False


@dataclass(frozen=True)
class Lineage:
    id: str
    name: str
    progenitor_of: tuple[str, ...] = ()


@dataclass(frozen=True)
class CellClass:
    """One canonical cell class. ``aliases`` maps a dataset name (or ``"generic"``) to labels."""

    id: str
    name: str
    lineage: str
    maturity_rank: int | None
    maturity: float | None
    # A read-only mapping is not hashable: leave it out of the hash (ids are unique anyway).
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.aliases, MappingProxyType):
            object.__setattr__(self, "aliases", MappingProxyType(
                {str(k): tuple(map(str, v)) for k, v in dict(self.aliases).items()}))

    def __reduce__(self):
        # mappingproxy cannot be pickled; DataLoader workers and joblib pickle what they touch.
        return (CellClass, (self.id, self.name, self.lineage, self.maturity_rank, self.maturity,
                            dict(self.aliases)))


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KnowledgeFileError(path, f"cannot read file ({exc.strerror or exc})") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KnowledgeFileError(path, f"invalid YAML: {exc}") from exc


class Ontology:
    """Validated, read-only view of the cell ontology. Build it with :func:`load_ontology`."""

    def __init__(
        self,
        classes: Iterable[CellClass],
        lineages: Iterable[Lineage],
        tolerance_pairs: Iterable[tuple[str, str]] = (),
        default_classes: Iterable[str] = (),
        path: Path | None = None,
        tolerance_path: Path | None = None,
    ):
        self.path = path
        self.tolerance_path = tolerance_path
        self.lineages: Mapping[str, Lineage] = MappingProxyType({lin.id: lin for lin in lineages})
        self.classes: Mapping[str, CellClass] = MappingProxyType({c.id: c for c in classes})
        self.ids: tuple[str, ...] = tuple(self.classes)
        self.default_classes: tuple[str, ...] = tuple(default_classes)
        self.tolerance_pairs: tuple[tuple[str, str], ...] = tuple(tuple(p) for p in tolerance_pairs)
        self._tolerant = frozenset(frozenset(p) for p in self.tolerance_pairs)
        self._lineage_pos = {lin: i for i, lin in enumerate(self.lineages)}
        # dataset -> normalized alias -> id. Built (and checked for clashes) by the loader.
        self._aliases: dict[str, dict[str, str]] = _alias_index(self.classes.values(), path)
        self.datasets: tuple[str, ...] = tuple(sorted(d for d in self._aliases if d != GENERIC))

    # -- container protocol ----------------------------------------------------------------
    def __contains__(self, cid: object) -> bool:
        return cid in self.classes

    def __getitem__(self, cid: str) -> CellClass:
        return self.classes[self._require(cid)]

    def __len__(self) -> int:
        return len(self.classes)

    def __reduce__(self):
        # Rebuild from the parts: the read-only mappings held here cannot be pickled as such.
        return (Ontology, (list(self.classes.values()), list(self.lineages.values()), self.tolerance_pairs,
                           self.default_classes, self.path, self.tolerance_path))

    def __repr__(self) -> str:
        return f"Ontology({len(self)} classes, {len(self.lineages)} lineages, path={self.path})"

    def _require(self, cid: str) -> str:
        if cid not in self.classes:
            close = difflib.get_close_matches(str(cid), self.ids, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"{cid!r} is not a canonical class id.{hint} Map dataset labels with "
                           f"Ontology.canonical(label, dataset=...) first.")
        return cid

    # -- labels ----------------------------------------------------------------------------
    def _lookup(self, label: Any, dataset: str | None) -> str | None:
        if _is_missing(label):
            return None
        key = normalize_label(label)
        if dataset is not None and key in self._aliases.get(dataset, {}):
            return self._aliases[dataset][key]
        return self._aliases[GENERIC].get(key)

    def canonical(self, label: Any, dataset: str | None = None) -> str:
        """Canonical id for ``label``: aliases of ``dataset`` first, then generic ones."""
        cid = self._lookup(label, dataset)
        if cid is None:
            raise self._unknown_error({_label_str(label): None}, dataset)
        return cid

    def map_labels(
        self,
        labels: Iterable[Any],
        dataset: str | None = None,
        label_map: Mapping[str, str] | str | Path | None = None,
    ) -> dict[Any, str]:
        """Map every distinct label to its canonical id (keys are the labels as given).

        ``label_map`` (a dict or a YAML file of ``source_label: canonical_id``) overrides the
        ontology's aliases. All unknown labels are reported at once, with their counts."""
        overrides: dict[str, str] = {}
        if label_map is not None:
            if not isinstance(label_map, Mapping):
                label_map = load_label_map(label_map, ontology=self)
            for src, target in label_map.items():
                cid = self._lookup(target, None)
                if cid is None:
                    raise ValueError(f"label map entry {src!r}: {target!r} is not a canonical class id "
                                     f"(valid ids: {', '.join(self.ids)})")
                overrides[str(src)] = cid
        overrides_norm = {normalize_label(k): v for k, v in overrides.items()}

        counts = Counter(labels)
        mapping: dict[Any, str] = {}
        unknown: dict[str, int] = {}
        for label, n in counts.items():
            cid = None
            if not _is_missing(label):
                cid = overrides.get(str(label)) or overrides_norm.get(normalize_label(label))
            cid = cid or self._lookup(label, dataset)
            if cid is None:
                key = _label_str(label)
                unknown[key] = unknown.get(key, 0) + n
            else:
                mapping[label] = cid
        if unknown:
            raise self._unknown_error(dict(sorted(unknown.items(), key=lambda kv: -kv[1])), dataset)
        return mapping

    def _unknown_error(self, unknown: Mapping[str, int | None], dataset: str | None) -> UnknownLabelError:
        hints: dict[str, str] = {}
        generic_keys = list(self._aliases[GENERIC])
        for label in unknown:
            key = normalize_label(label)
            elsewhere = sorted(f"{self._aliases[d][key]!r} in dataset {d!r}" for d in self.datasets
                               if d != dataset and key in self._aliases[d])
            if elsewhere:
                hints[label] = "is an alias of " + ", ".join(elsewhere) + "; pass that dataset="
            else:
                close = difflib.get_close_matches(key, generic_keys, n=1, cutoff=0.8)
                if close:
                    hints[label] = f"looks like {self._aliases[GENERIC][close[0]]!r}"
        return UnknownLabelError(unknown, dataset, hints, self.datasets)

    # -- lineage and maturity --------------------------------------------------------------
    def lineage(self, cid: str) -> str:
        return self[cid].lineage

    def maturity(self, cid: str) -> float | None:
        """Position in [0, 1] along the lineage (rank / (n_ranked - 1)); None if unranked."""
        return self[cid].maturity

    def stages(self, lineage: str) -> tuple[str, ...]:
        """Ranked classes of ``lineage``, least mature first."""
        if lineage not in self.lineages:
            raise KeyError(f"unknown lineage {lineage!r}; lineages: {', '.join(self.lineages)}")
        ranked = [c for c in self.classes.values() if c.lineage == lineage and c.maturity_rank is not None]
        return tuple(c.id for c in sorted(ranked, key=lambda c: c.maturity_rank))

    def order(self, ids: Iterable[str]) -> list[str]:
        """``ids`` sorted by lineage order, then maturity rank (unranked last), then id."""
        ids = list(ids)
        missing = [i for i in ids if i not in self.classes]
        if missing:
            raise KeyError(f"not canonical class ids: {', '.join(map(repr, missing))}")

        def key(cid: str) -> tuple:
            c = self.classes[cid]
            return (self._lineage_pos[c.lineage], c.maturity_rank is None, c.maturity_rank or 0, cid)

        return sorted(ids, key=key)

    # -- tolerance -------------------------------------------------------------------------
    def is_tolerable(self, true_id: str, pred_id: str) -> bool:
        """True if predicting ``pred_id`` for ``true_id`` is tolerated (always on the diagonal)."""
        self._require(true_id)
        self._require(pred_id)
        return true_id == pred_id or frozenset((true_id, pred_id)) in self._tolerant

    def tolerance_mask(self, classes: Iterable[str]) -> np.ndarray:
        """Boolean (true x predicted) matrix of tolerable outcomes for ``classes`` in that order."""
        classes = list(classes)
        return np.array([[self.is_tolerable(t, p) for p in classes] for t in classes], dtype=bool)


def _label_str(label: Any) -> str:
    return "<missing>" if _is_missing(label) else str(label)


def _alias_index(classes: Iterable[CellClass], path: Path | None) -> dict[str, dict[str, str]]:
    """dataset -> normalized alias -> id; one alias naming two ids within a dataset is an error."""
    index: dict[str, dict[str, str]] = {GENERIC: {}}
    for c in classes:
        entries = [(GENERIC, c.id), (GENERIC, c.name)]
        entries += [(ds, a) for ds, labels in c.aliases.items() for a in labels]
        for ds, alias in entries:
            key = normalize_label(alias)
            table = index.setdefault(ds, {})
            other = table.get(key)
            if other is not None and other != c.id:
                raise KnowledgeFileError(
                    path, f"alias {alias!r} (dataset {ds!r}) maps to both {other!r} and {c.id!r}; "
                          "an alias may name only one class per dataset", entry=f"classes/{c.id}")
            table[key] = c.id
    return index


# ---------------------------------------------------------------------------------------------
# loading


def _parse_lineages(raw: Any, path: Path) -> list[Lineage]:
    if not isinstance(raw, list) or not raw:
        raise KnowledgeFileError(path, "`lineages` must be a non-empty list of {id, name}", entry="lineages")
    out: list[Lineage] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        entry = f"lineages[{i}]"
        if not isinstance(item, Mapping) or "id" not in item:
            raise KnowledgeFileError(path, "each lineage needs an `id` (and a `name`)", entry=entry)
        lid = item["id"]
        entry = f"lineages/{lid}"
        if not isinstance(lid, str) or not _ID_RE.match(lid):
            raise KnowledgeFileError(path, f"lineage id {lid!r} must be snake_case", entry=entry)
        if lid in seen:
            raise KnowledgeFileError(path, f"lineage {lid!r} declared twice", entry=entry)
        extra = set(item) - {"id", "name", "progenitor_of"}
        if extra:
            raise KnowledgeFileError(path, f"unknown keys {sorted(extra)}", entry=entry)
        seen.add(lid)
        prog = item.get("progenitor_of") or []
        if not isinstance(prog, list):
            raise KnowledgeFileError(path, "`progenitor_of` must be a list of lineage ids", entry=entry)
        out.append(Lineage(lid, str(item.get("name") or lid), tuple(map(str, prog))))
    for lin in out:
        bad = [p for p in lin.progenitor_of if p not in seen]
        if bad:
            raise KnowledgeFileError(path, f"`progenitor_of` names undeclared lineages {bad}",
                                     entry=f"lineages/{lin.id}")
    return out


def _parse_aliases(raw: Any, path: Path, entry: str) -> dict[str, tuple[str, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise KnowledgeFileError(path, "`aliases` must map a dataset name (or 'generic') to a list of labels",
                                 entry=entry)
    out: dict[str, tuple[str, ...]] = {}
    for ds, labels in raw.items():
        if isinstance(labels, (str, int)):
            labels = [labels]
        if not isinstance(labels, list) or not all(isinstance(x, (str, int)) and not isinstance(x, bool)
                                                   for x in labels):
            raise KnowledgeFileError(path, f"aliases for {ds!r} must be a list of strings", entry=entry)
        # YAML reads an unquoted 1 as an int; labels are compared as text, so store text.
        out[str(ds)] = tuple(str(x) for x in labels)
    return out


def _parse_classes(raw: Any, lineages: list[Lineage], path: Path) -> list[CellClass]:
    if not isinstance(raw, list) or not raw:
        raise KnowledgeFileError(path, "`classes` must be a non-empty list", entry="classes")
    lineage_ids = [lin.id for lin in lineages]
    parsed: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping) or "id" not in item:
            raise KnowledgeFileError(path, "each class needs `id`, `name`, `lineage`, `maturity_rank`",
                                     entry=f"classes[{i}]")
        cid = item["id"]
        entry = f"classes/{cid}"
        if not isinstance(cid, str) or not _ID_RE.match(cid):
            raise KnowledgeFileError(path, f"class id {cid!r} must be snake_case (a-z, 0-9, _)", entry=entry)
        if cid in seen:
            raise KnowledgeFileError(path, f"class {cid!r} declared twice", entry=entry)
        seen.add(cid)
        extra = set(item) - {"id", "name", "lineage", "maturity_rank", "aliases"}
        if extra:
            raise KnowledgeFileError(path, f"unknown keys {sorted(extra)}", entry=entry)
        lineage = item.get("lineage")
        if lineage not in lineage_ids:
            raise KnowledgeFileError(path, f"lineage {lineage!r} is not declared under `lineages` "
                                           f"(declared: {', '.join(lineage_ids)})", entry=entry)
        if "maturity_rank" not in item:
            raise KnowledgeFileError(path, "`maturity_rank` is required (an int, or null if meaningless)",
                                     entry=entry)
        rank = item["maturity_rank"]
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 0):
            raise KnowledgeFileError(path, f"maturity_rank must be a non-negative int or null, got {rank!r}",
                                     entry=entry)
        parsed.append(dict(id=cid, name=str(item.get("name") or cid), lineage=lineage, maturity_rank=rank,
                           aliases=_parse_aliases(item.get("aliases"), path, entry)))

    # Ranks of a lineage must be exactly 0..n-1 so that rank / (n - 1) spans [0, 1].
    n_ranked: dict[str, int] = {}
    for lid in lineage_ids:
        ranks = sorted(p["maturity_rank"] for p in parsed if p["lineage"] == lid and p["maturity_rank"] is not None)
        if ranks != list(range(len(ranks))):
            raise KnowledgeFileError(path, f"maturity ranks {ranks} must be 0..n-1 without gaps or repeats",
                                     entry=f"lineages/{lid}")
        n_ranked[lid] = len(ranks)

    out = []
    for p in parsed:
        rank, n = p["maturity_rank"], n_ranked[p["lineage"]]
        # A single ranked class (the blast) sits at the start of its series: 0.0.
        maturity = None if rank is None else (rank / (n - 1) if n > 1 else 0.0)
        out.append(CellClass(p["id"], p["name"], p["lineage"], rank, maturity, p["aliases"]))
    return out


def _parse_tolerance(path: Path, known: Iterable[str]) -> list[tuple[str, str]]:
    raw = read_yaml(path)
    if raw is None:
        return []
    if not isinstance(raw, Mapping) or not isinstance(raw.get("pairs", []), list):
        raise KnowledgeFileError(path, "expected a mapping with `pairs:` (a list of [id, id] pairs)")
    known = set(known)
    pairs: list[tuple[str, str]] = []
    seen: dict[frozenset, int] = {}
    for i, pair in enumerate(raw.get("pairs") or []):
        entry = f"pairs[{i}]"
        if not isinstance(pair, list) or len(pair) != 2:
            raise KnowledgeFileError(path, f"a pair is a list of two class ids, got {pair!r}", entry=entry)
        bad = [x for x in pair if x not in known]
        if bad:
            raise KnowledgeFileError(path, f"unknown class id(s) {bad} in pair {pair}", entry=entry)
        if pair[0] == pair[1]:
            raise KnowledgeFileError(path, f"pair {pair} names one class twice (the diagonal is always "
                                           "tolerable)", entry=entry)
        key = frozenset(pair)
        if key in seen:
            raise KnowledgeFileError(path, f"pair {pair} repeats pairs[{seen[key]}] (pairs are symmetric)",
                                     entry=entry)
        seen[key] = i
        pairs.append((pair[0], pair[1]))
    return pairs


def _build(path: Path, tolerance: Path | None) -> Ontology:
    raw = read_yaml(path)
    if not isinstance(raw, Mapping):
        raise KnowledgeFileError(path, "expected a mapping with `lineages:` and `classes:`")
    extra = set(raw) - {"version", "default_classes", "lineages", "classes"}
    if extra:
        raise KnowledgeFileError(path, f"unknown top-level keys {sorted(extra)}")
    lineages = _parse_lineages(raw.get("lineages"), path)
    classes = _parse_classes(raw.get("classes"), lineages, path)
    ids = [c.id for c in classes]
    default = raw.get("default_classes") or []
    if not isinstance(default, list):
        raise KnowledgeFileError(path, "`default_classes` must be a list of class ids", entry="default_classes")
    bad = [d for d in default if d not in ids]
    dup = [d for d, n in Counter(default).items() if n > 1]
    if bad or dup:
        raise KnowledgeFileError(path, f"unknown ids {bad} / repeated ids {dup}", entry="default_classes")
    if tolerance is None and (path.parent / TOLERANCE_FILENAME).is_file():
        tolerance = path.parent / TOLERANCE_FILENAME
    pairs = _parse_tolerance(tolerance, ids) if tolerance is not None else []
    return Ontology(classes, lineages, pairs, default, path=path, tolerance_path=tolerance)


@functools.lru_cache(maxsize=1)
def _default_ontology() -> Ontology:
    return _build(DEFAULT_ONTOLOGY_PATH, None)


def load_ontology(path: str | Path | None = None, tolerance: str | Path | None = None) -> Ontology:
    """Load and validate an ontology YAML (default: the packaged one, cached).

    ``tolerance`` defaults to ``tolerance.yaml`` beside the ontology file, if there is one."""
    if tolerance is None and (path is None or Path(path).resolve() == DEFAULT_ONTOLOGY_PATH):
        return _default_ontology()
    path = Path(path).resolve() if path is not None else DEFAULT_ONTOLOGY_PATH
    return _build(path, Path(tolerance) if tolerance is not None else None)


def load_label_map(path: str | Path, ontology: Ontology | None = None) -> dict[str, str]:
    """Read a ``{source_label: canonical_id}`` YAML file; targets are checked against the ontology."""
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, Mapping) or not raw:
        raise KnowledgeFileError(path, "a label map is a non-empty YAML mapping, one line per label, e.g. "
                                       "`NGB: band_neutrophil`")
    ont = ontology or load_ontology()
    out: dict[str, str] = {}
    targets_by_key: dict[str, tuple[str, str]] = {}
    for src, target in raw.items():
        entry = repr(src)
        if not isinstance(target, str):
            raise KnowledgeFileError(path, f"target must be a canonical class id, got {target!r}", entry=entry)
        cid = ont._lookup(target, None)
        if cid is None:
            close = difflib.get_close_matches(target, ont.ids, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise KnowledgeFileError(path, f"{target!r} is not a class of the ontology.{hint}", entry=entry)
        key = normalize_label(src)
        if key in targets_by_key and targets_by_key[key][1] != cid:
            raise KnowledgeFileError(path, f"{src!r} and {targets_by_key[key][0]!r} differ only in case/spacing "
                                           "but map to different classes", entry=entry)
        targets_by_key[key] = (str(src), cid)
        out[str(src)] = cid
    return out
