"""A prepared dataset on disk (``data/prepared/<name>/``) and how the rest of the zoo reads it."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import pandas as pd

from zoo.paths import prepared_dir, project_dir

from .dvc import dvc_md5
from .folds import check_fold, split_folds
from .manifest import manifest_digest, read_manifest, resolve_path

MANIFEST = "manifest.parquet"
FOLDS = "folds.csv"
INFO = "dataset.json"
REPORT_CSV = "report.csv"
REPORT_TXT = "report.txt"


class PreparedDataset:
    """Read-only view of ``data/prepared/<name>/``.

    ``.name``, ``.path`` (the prepared folder), ``.root`` (image root), ``.manifest``,
    ``.classes`` (canonical ids present, ontology order), ``.digest`` (sha256 of the manifest
    content), ``.dvc_md5`` (DVC's md5 of the raw folder, None if not DVC-tracked), ``.n_folds``,
    ``.split(fold)``, ``.image_paths(df)``/``.mask_paths(df)`` (absolute file paths).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        info_file = self.path / INFO
        if not info_file.is_file():
            raise FileNotFoundError(f"{self.path} is not a prepared dataset (no {INFO})")
        self.info: dict = json.loads(info_file.read_text())
        self.name: str = self.info["name"]
        self.n_folds: int = int(self.info["n_folds"])
        self.seed: int = int(self.info.get("seed", 0))
        self.reader: str | None = self.info.get("reader")

    @classmethod
    def load(cls, name_or_path: str | Path | "PreparedDataset") -> "PreparedDataset":
        """By name (``data/prepared/<name>``) or by the path of a prepared folder."""
        if isinstance(name_or_path, PreparedDataset):
            return name_or_path
        candidate = Path(name_or_path).expanduser()
        if (candidate / INFO).is_file():
            return cls(candidate)
        by_name = prepared_dir(str(name_or_path))
        if (by_name / INFO).is_file():
            return cls(by_name)
        available = list_prepared()
        raise FileNotFoundError(
            f"no prepared dataset {str(name_or_path)!r} (looked in {prepared_dir()}); "
            f"available: {', '.join(available) or 'none'}. Create it with `zoo data synth`, "
            f"`zoo data prepare <name>` (params.yaml) or `zoo data ingest <folder> --name <name>`"
        )

    # -- contents ------------------------------------------------------------------------------
    @cached_property
    def root(self) -> Path:
        root = Path(self.info["root"])
        return root if root.is_absolute() else (project_dir() / root).resolve()

    @cached_property
    def manifest(self) -> pd.DataFrame:
        return read_manifest(self.path / MANIFEST)

    @cached_property
    def classes(self) -> list[str]:
        from zoo.knowledge import load_ontology

        return load_ontology().order(self.manifest["label"].unique())

    @cached_property
    def digest(self) -> str:
        return manifest_digest(self.manifest)

    @cached_property
    def dvc_md5(self) -> str | None:
        return dvc_md5(self.root)

    @cached_property
    def report(self) -> pd.DataFrame:
        return pd.read_csv(self.path / REPORT_CSV)

    def split(self, fold: int) -> dict[str, pd.DataFrame]:
        """``{"train", "val", "test"}`` frames: test = fold k, val = fold (k+1) mod n."""
        return split_folds(self.manifest, check_fold(fold, self.n_folds), self.n_folds)

    def image_paths(self, df: pd.DataFrame | None = None) -> list[Path]:
        df = self.manifest if df is None else df
        return [resolve_path(p, self.root, self.path) for p in df["image"]]

    def mask_paths(self, df: pd.DataFrame | None = None) -> list[Path | None]:
        df = self.manifest if df is None else df
        return [resolve_path(p, self.root, self.path) if isinstance(p, str) else None for p in df["mask"]]

    def counts(self) -> pd.DataFrame:
        """Images per class (rows, ontology order) and fold (columns), with totals."""
        table = pd.crosstab(self.manifest["label"], self.manifest["fold"]).reindex(self.classes)
        table.columns = [f"fold {c}" for c in table.columns]
        table["total"] = table.sum(axis=1)
        table.loc["total"] = table.sum(axis=0)
        return table

    def __repr__(self) -> str:
        return f"PreparedDataset({self.name!r}, {len(self.manifest)} images, {len(self.classes)} classes, path={self.path})"


def list_prepared() -> list[str]:
    base = prepared_dir()
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / INFO).is_file())
