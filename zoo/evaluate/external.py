"""External validation with abstentions (seed 004, Fig. 4): a model evaluated on a dataset whose
classes differ from its own.

The paper evaluated its 21-class model on 627 images of Choi et al.; 247 predictions were
"artefact" or "not identifiable" — the network declining to name the cell — and the agreement
was reported on the other 380 (coverage 61 %). Here a *class map* says, per model class, which
dataset class a prediction means; predictions of the ``abstain`` classes, or of a model class
mapped to ``null`` (no counterpart in the dataset's scheme), are abstentions: counted, reported as
coverage, not scored. Images of dataset classes the model cannot know (``ignore``) are left out.

```yaml
# maps/pbc_to_zheng.yaml
direction: model_to_dataset        # the only form with abstentions
map:                               # model class -> dataset class; null = abstain
  band_neutrophil: neutrophil
  segmented_neutrophil: neutrophil
abstain: [artefact, not_identifiable]   # the default
ignore: []                              # dataset classes whose images are left out
```
Model classes not listed keep their name; each must then be a dataset class, or the map is
refused with the list of unmapped classes (no silent abstentions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

DEFAULT_ABSTAIN = ("artefact", "not_identifiable")
_KEYS = {"direction", "map", "abstain", "ignore", "description"}


@dataclass(frozen=True)
class ExternalMap:
    """Model class -> dataset class (None = abstain), abstaining model classes, ignored dataset classes."""

    mapping: dict[str, str | None]
    abstain: tuple[str, ...] = DEFAULT_ABSTAIN
    ignore: tuple[str, ...] = ()
    source: str = "inline"

    @classmethod
    def load(cls, spec: "str | Path | Mapping[str, Any] | ExternalMap") -> "ExternalMap":
        if isinstance(spec, ExternalMap):
            return spec
        source = "inline"
        if isinstance(spec, (str, Path)):
            import yaml

            path = Path(spec).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"class map {spec} not found (a YAML file, see maps/)")
            spec, source = yaml.safe_load(path.read_text()) or {}, str(path)
        if not isinstance(spec, Mapping):
            raise ValueError(f"class map {source} must be a mapping, got {type(spec).__name__}")
        unknown = sorted(set(spec) - _KEYS)
        if unknown:
            raise ValueError(f"class map {source}: unknown keys {unknown}; valid: {sorted(_KEYS)}")
        if spec.get("direction", "model_to_dataset") != "model_to_dataset":
            raise ValueError(f"class map {source}: abstentions need 'direction: model_to_dataset' "
                             f"(model class -> dataset class), got {spec.get('direction')!r}")
        raw = spec.get("map") or {}
        if not isinstance(raw, Mapping):
            raise ValueError(f"class map {source}: 'map' must be a mapping of model class -> dataset class or null")
        mapping: dict[str, str | None] = {}
        for k, v in raw.items():
            if v is not None and not isinstance(v, str):
                raise ValueError(f"class map {source}: {k!r} maps to {v!r}; expected a class id or null")
            mapping[str(k)] = v
        return cls(mapping, tuple(map(str, spec.get("abstain", DEFAULT_ABSTAIN) or ())),
                   tuple(map(str, spec.get("ignore") or ())), source)

    @staticmethod
    def wants(spec: Any) -> bool:
        """Whether a class-map spec (dict/YAML path) asks for abstention handling: it names
        ``abstain``/``ignore``, or maps a model class to null (model_to_dataset form). Other maps
        keep :class:`zoo.tracking.evaluation.ClassMap`'s meaning."""
        if isinstance(spec, ExternalMap):
            return True
        if isinstance(spec, (str, Path)):
            import yaml

            path = Path(spec).expanduser()
            if not path.is_file():
                return False
            spec = yaml.safe_load(path.read_text()) or {}
        if not isinstance(spec, Mapping):
            return False
        nulls = isinstance(spec.get("map"), Mapping) and any(v is None for v in spec["map"].values())
        return "abstain" in spec or "ignore" in spec or (spec.get("direction") == "model_to_dataset" and nulls)

    def check(self, model_classes: Sequence[str], dataset_classes: Sequence[str]) -> None:
        """Refuse a map that names classes the model lacks, or leaves a model class without meaning."""
        model_classes, dataset_classes = list(map(str, model_classes)), set(map(str, dataset_classes))
        bad = sorted(set(self.mapping) - set(model_classes))
        if bad:
            raise ValueError(f"class map {self.source}: {bad} are not classes of the model ({model_classes})")
        unmapped = sorted(c for c in model_classes
                          if c not in self.mapping and c not in self.abstain and c not in dataset_classes)
        if unmapped:
            raise ValueError(
                f"class map {self.source}: model classes {unmapped} are neither dataset classes "
                f"({sorted(dataset_classes)}) nor mapped; map each to a dataset class, or to null to count its "
                "predictions as abstentions")

    def translate(self, model_class: str) -> str | None:
        """The dataset class a prediction means, or None for an abstention."""
        if model_class in self.abstain:
            return None
        return self.mapping.get(model_class, model_class)


@dataclass
class ExternalResult:
    """Masks and counts of one external evaluation (arrays aligned with the input rows)."""

    scored: np.ndarray            # bool: in the evaluation and not an abstention
    ignored: np.ndarray           # bool: true class in ``ignore``
    abstained: np.ndarray         # bool: prediction is an abstention (among the not-ignored)
    y_pred_mapped: np.ndarray     # dataset class per prediction (None for abstentions)
    agreement: pd.DataFrame       # counts, rows = dataset class, columns = model class (raw predictions)
    counts: dict[str, Any] = field(default_factory=dict)


def external_agreement(y_true: Sequence[str], y_pred: Sequence[str], model_classes: Sequence[str],
                       emap: ExternalMap) -> ExternalResult:
    """Apply ``emap`` to predictions ``y_pred`` (model classes) of images labelled ``y_true``
    (dataset classes): which rows are ignored, abstained, scored; the mapped predictions; the
    agreement matrix (Fig. 4: every non-ignored image, by dataset class x predicted model class,
    abstention columns included); and ``counts``: ``n_total``, ``n_ignored``, ``n_abstained``,
    ``n_scored``, ``coverage`` (= scored / not ignored), ``abstained_<class>`` per abstaining class."""
    yt = np.asarray([str(v) for v in y_true], dtype=object)
    yp = np.asarray([str(v) for v in y_pred], dtype=object)
    if yt.shape != yp.shape:
        raise ValueError(f"y_true and y_pred differ in length: {len(yt)} vs {len(yp)}")
    emap.check(model_classes, sorted(set(yt)))
    ignored = np.isin(yt, list(emap.ignore)) if emap.ignore else np.zeros(len(yt), dtype=bool)
    mapped = np.asarray([emap.translate(p) for p in yp], dtype=object)
    abstained = ~ignored & np.asarray([m is None for m in mapped], dtype=bool)
    scored = ~ignored & ~abstained
    considered = int((~ignored).sum())
    rows = sorted(set(yt[~ignored]))
    cols = [c for c in map(str, model_classes) if c in set(yp[~ignored])] or list(map(str, model_classes))
    agreement = (pd.crosstab(pd.Series(yt[~ignored], name="dataset class"),
                             pd.Series(yp[~ignored], name="predicted model class"))
                 .reindex(index=rows, columns=cols, fill_value=0))
    counts: dict[str, Any] = {
        "n_total": int(len(yt)), "n_ignored": int(ignored.sum()), "n_abstained": int(abstained.sum()),
        "n_scored": int(scored.sum()),
        "coverage": float(scored.sum() / considered) if considered else float("nan"),
    }
    for c in sorted({p for p, a in zip(yp, abstained) if a}):
        counts[f"abstained_{c}"] = int(((yp == c) & abstained).sum())
    return ExternalResult(scored, ignored, abstained, mapped, agreement, counts)


def plot_agreement(agreement: pd.DataFrame, abstain: Sequence[str] = (), title: str | None = None):
    """Fig. 4 style: row-normalised agreement of dataset annotations (rows) with model predictions
    (columns); abstaining columns are hatched and named in the title's coverage."""
    from matplotlib.figure import Figure

    C = agreement.to_numpy(dtype=float)
    R = np.divide(C, C.sum(1, keepdims=True), out=np.zeros_like(C), where=C.sum(1, keepdims=True) > 0)
    fig = Figure(figsize=(max(4.0, 0.45 * C.shape[1] + 2.5), max(3.0, 0.45 * C.shape[0] + 1.8)),
                 layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(R, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(C.shape[1]), labels=[f"{c} (abstain)" if c in abstain else str(c) for c in agreement.columns],
                  rotation=90, fontsize=8)
    ax.set_yticks(range(C.shape[0]), labels=[f"{r} ({int(n)})" for r, n in zip(agreement.index, C.sum(1))],
                  fontsize=8)
    for i in range(C.shape[0]):
        for j in range(C.shape[1]):
            if C[i, j]:
                ax.text(j, i, int(C[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if R[i, j] > 0.5 else "black")
    ax.set_xlabel("model prediction")
    ax.set_ylabel("dataset annotation (images)")
    ax.set_title(title or "Agreement with the external annotation")
    fig.colorbar(im, ax=ax, label="fraction of the dataset class")
    return fig
