"""What every reader shares: walking a folder and checking the frame a reader returns."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pandas as pd

REQUIRED_COLUMNS = ("image", "source_label")
READER_COLUMNS = ("image", "source_label", "group", "mask", "maturity")

# Folders no dataset layout uses for images: VCS/OS metadata and macOS zip resource forks.
SKIP_DIRS = {"__MACOSX", "__pycache__"}


def list_files(root: Path) -> list[str]:
    """Every file under ``root`` as a POSIX path relative to it, sorted. Hidden folders and
    macOS resource-fork folders are not descended into; hidden *files* (``.DS_Store``) are listed
    so that the cleaning report can name them."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS)
        rel = Path(dirpath).relative_to(root)
        out.extend((rel / f).as_posix() for f in filenames)
    return sorted(out)


def top_folder(rel: str) -> str | None:
    """First path component, or None for a file directly in the root."""
    parts = PurePosixPath(rel).parts
    return parts[0] if len(parts) > 1 else None


def check_reader_output(df: pd.DataFrame, reader: str) -> pd.DataFrame:
    """Validate and normalise a reader's frame: required columns, relative unique paths,
    optional columns added as nulls. Errors name the reader and the fix."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"reader {reader!r} must return a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"reader {reader!r} returned no {', '.join(missing)} column(s); a reader returns "
                         f"columns {', '.join(REQUIRED_COLUMNS)} and optionally group, mask, maturity")
    df = df.copy()
    for col in READER_COLUMNS:
        if col not in df.columns:
            df[col] = None
    df["image"] = df["image"].map(lambda p: PurePosixPath(str(p)).as_posix())
    bad = [p for p in df["image"] if PurePosixPath(p).is_absolute() or ".." in PurePosixPath(p).parts]
    if bad:
        raise ValueError(f"reader {reader!r}: image paths must be relative to the dataset root, got "
                         f"{bad[:3]}{' ...' if len(bad) > 3 else ''}")
    dups = df["image"][df["image"].duplicated()].unique().tolist()
    if dups:
        raise ValueError(f"reader {reader!r} listed {len(dups)} image(s) twice, e.g. {dups[:3]}")
    mat = pd.to_numeric(df["maturity"], errors="coerce")
    outside = df.loc[mat.notna() & ((mat < 0) | (mat > 1)), "image"].tolist()
    if outside:
        raise ValueError(f"reader {reader!r}: maturity must lie in [0, 1]; out of range for {outside[:3]}")
    df["maturity"] = mat.astype("float64")
    return df[list(READER_COLUMNS) + [c for c in df.columns if c not in READER_COLUMNS]]
