"""The ``Guide``: one 2-D point per cell class, the optimisation target of the guided family."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class Guide:
    """A named embedding guide: ``coords[i]`` is the 2-D point of ``classes[i]``.

    ``edges`` (the class graph the layout came from, if any) and ``meta`` (how it was made) are
    informative only: losses use ``classes`` and ``coords``."""

    name: str
    classes: list[str]
    coords: np.ndarray
    edges: list[tuple[str, str]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.classes = [str(c) for c in self.classes]
        self.coords = np.asarray(self.coords, dtype=float)
        if self.coords.shape != (len(self.classes), 2):
            raise ValueError(f"guide {self.name!r}: coords must be ({len(self.classes)}, 2) for "
                             f"{len(self.classes)} classes, got {self.coords.shape}")
        if len(set(self.classes)) != len(self.classes):
            dup = sorted({c for c in self.classes if self.classes.count(c) > 1})
            raise ValueError(f"guide {self.name!r}: classes repeated: {dup}")
        if not np.isfinite(self.coords).all():
            bad = [c for c, ok in zip(self.classes, np.isfinite(self.coords).all(1)) if not ok]
            raise ValueError(f"guide {self.name!r}: non-finite coordinates for {bad}")

    def __len__(self) -> int:
        return len(self.classes)

    def index(self, cls: str) -> int:
        try:
            return self.classes.index(cls)
        except ValueError:
            raise KeyError(f"class {cls!r} is not in guide {self.name!r} (classes: {', '.join(self.classes)})") from None

    def position(self, cls: str) -> np.ndarray:
        return self.coords[self.index(cls)]

    def distances(self, p: float = 1.0) -> np.ndarray:
        """K x K Minkowski-p distances between guide points (L1 by default, as in Eq. 3)."""
        diff = np.abs(self.coords[:, None, :] - self.coords[None, :, :])
        return (diff ** p).sum(-1) ** (1.0 / p)

    def restrict(self, classes: Sequence[str]) -> "Guide":
        """The same points for a subset of classes, in the given order (no re-layout, no rescale:
        use :func:`zoo.guides.create_guide` with ``classes=`` to lay out the subset's own graph)."""
        idx = [self.index(c) for c in classes]
        keep = set(classes)
        return Guide(self.name, list(classes), self.coords[idx].copy(),
                     [e for e in self.edges if e[0] in keep and e[1] in keep],
                     {**self.meta, "restricted_from": len(self.classes)})

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"class": self.classes, "x": self.coords[:, 0], "y": self.coords[:, 1]})

    def save_csv(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # repr-precision floats: a guide read back is bit-identical to the one saved.
        self.to_frame().to_csv(path, index=False, float_format="%.17g")
        return path

    @classmethod
    def from_csv(cls, path: str | Path, name: str | None = None) -> "Guide":
        path = Path(path)
        df = pd.read_csv(path)
        missing = {"class", "x", "y"} - set(df.columns)
        if missing:
            raise ValueError(f"{path}: a guide CSV needs columns class,x,y; missing {sorted(missing)}")
        return cls(name or path.stem, df["class"].astype(str).tolist(), df[["x", "y"]].to_numpy(float))

    @classmethod
    def from_frame(cls, df: pd.DataFrame, name: str) -> "Guide":
        return cls(name, df["class"].astype(str).tolist(), df[["x", "y"]].to_numpy(float))
