"""The manifest: one Parquet row per image, the single description of a prepared dataset.

Columns (ARCHITECTURE.md): ``image`` (path relative to the dataset root), ``label`` (canonical id),
``source_label``, ``lineage``, ``maturity`` (float in [0, 1] or null), ``group`` (nullable),
``mask`` (nullable), ``width``, ``height``, ``sha256`` (of the source file's bytes), ``ahash``
(imagehash average hash, 16 hex digits), ``fold`` (int).

Files the ingest had to write itself (an RGB copy of a 16-bit PNG, a thresholded mask) never go
next to the user's data: they live in the prepared folder and their manifest path starts with
``@prepared/``. :func:`resolve_path` turns any manifest path into a file path.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

PREPARED_PREFIX = "@prepared/"

SCHEMA = pa.schema([
    ("image", pa.string()),
    ("label", pa.string()),
    ("source_label", pa.string()),
    ("lineage", pa.string()),
    ("maturity", pa.float64()),
    ("group", pa.string()),
    ("mask", pa.string()),
    ("width", pa.int64()),
    ("height", pa.int64()),
    ("sha256", pa.string()),
    ("ahash", pa.string()),
    ("fold", pa.int64()),
])
COLUMNS: tuple[str, ...] = tuple(SCHEMA.names)
NULLABLE = {"maturity", "group", "mask"}
# Content, not location: the image's bytes (sha256), its label and its fold. The relative path is
# left out on purpose, so ingesting `…/pbc` or `…/pbc/PBC_dataset_normal_DIB` (same files, other
# prefixes) gives the same digest — the promotion gate compares digests.
DIGEST_COLUMNS = ("sha256", "label", "fold")


def resolve_path(rel: str, root: str | Path, prepared: str | Path | None = None) -> Path:
    """File path of a manifest ``image``/``mask`` entry: ``root / rel``, or inside the prepared
    folder for ``@prepared/...`` entries (files written by ingest)."""
    if rel.startswith(PREPARED_PREFIX):
        if prepared is None:
            raise ValueError(f"{rel!r} lives in the prepared dataset folder; pass prepared_dir "
                             "(PreparedDataset.path) or load images through PreparedDataset/make_loaders")
        return Path(prepared) / rel[len(PREPARED_PREFIX):]
    return Path(root) / rel


def to_manifest_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Select and type the manifest columns (in order), raising on anything missing."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"manifest lacks column(s) {', '.join(missing)}; required: {', '.join(COLUMNS)}")
    table = pa.Table.from_pandas(df[list(COLUMNS)], schema=SCHEMA, preserve_index=False)
    return table.to_pandas()


def validate_manifest(df: pd.DataFrame, where: str = "manifest") -> None:
    """Check columns, nulls, ranges and uniqueness; the message names the first bad rows."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {', '.join(missing)}")
    for col in COLUMNS:
        if col in NULLABLE:
            continue
        nulls = df[col].isna()
        if nulls.any():
            raise ValueError(f"{where}: column {col!r} has {int(nulls.sum())} null(s), e.g. row "
                             f"{df.index[nulls][0]} ({df.loc[nulls, 'image'].iloc[0]!r})")
    dup = df["image"].duplicated()
    if dup.any():
        raise ValueError(f"{where}: image listed twice: {df.loc[dup, 'image'].iloc[0]!r}")
    m = df["maturity"].dropna()
    if ((m < 0) | (m > 1)).any():
        raise ValueError(f"{where}: maturity outside [0, 1]")
    if (df["fold"] < 0).any():
        raise ValueError(f"{where}: negative fold")
    bad_hash = ~df["ahash"].astype(str).str.fullmatch(r"[0-9a-f]{16}")
    if bad_hash.any():
        raise ValueError(f"{where}: ahash must be 16 hex digits, got {df.loc[bad_hash, 'ahash'].iloc[0]!r}")


def write_manifest(df: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    frame = to_manifest_frame(df)
    validate_manifest(frame, where=str(path))
    table = pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def read_manifest(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    df = pq.read_table(path).to_pandas()
    validate_manifest(df, where=str(path))
    return df


def manifest_digest(df: pd.DataFrame) -> str:
    """sha256 over (image sha256, label, fold) sorted: the same images with the same labels and
    folds give the same digest whatever the row order, the file names, the folder the dataset was
    ingested from, or the Parquet writer version."""
    part = df[list(DIGEST_COLUMNS)].sort_values(list(DIGEST_COLUMNS), kind="stable")
    h = hashlib.sha256()
    for row in part.itertuples(index=False):
        h.update(("\t".join(str(v) for v in row) + "\n").encode("utf-8"))
    return h.hexdigest()
