"""Per-file checks before anything trains on a file: readable, an image, RGB, hashed.

Every file listed by a reader passes through :func:`check_files` once, at ingest. What comes out
is either fine, *converted* (grayscale/RGBA/palette/16-bit: an 8-bit RGB PNG copy is written into
the prepared folder; the source is never touched) or *dropped* with the reason (zero-size,
not an image, unreadable/truncated, missing). Masks get the same treatment: stray grey levels are
snapped to the Zheng convention {0, 128, 255} into a cleaned copy.

Hashing (sha256 of the bytes + imagehash average hash of the decoded pixels) is the expensive
part, so files are processed in a process pool.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable

import imagehash
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .images import ImageDecodeError, load_bytes, to_rgb
from .manifest import PREPARED_PREFIX

# Mask values of the Zheng sets (and of the synthetic generator): background, cytoplasm, nucleus.
MASK_LEVELS = np.array([0, 128, 255], dtype=np.uint8)
CONVERTED_DIR = "converted"
MASKS_DIR = "masks"

DROPPED, CONVERTED, FLAGGED = "dropped", "converted", "flagged"


def image_extensions() -> set[str]:
    return {ext.lower() for ext in Image.registered_extensions()}


def precheck(rel: str, path: Path, extensions: set[str]) -> str | None:
    """Cheap reasons to drop a file without opening it (None = open it)."""
    name = PurePosixPath(rel).name
    if name.startswith("."):
        return "hidden/system file (e.g. .DS_Store, AppleDouble '._' file), not an image"
    if name.lower() in {"thumbs.db", "desktop.ini"}:
        return "system file, not an image"
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in extensions:
        return f"not an image file (extension {suffix or 'none'!r})"
    if not path.is_file():
        return "file listed by the reader does not exist"
    if path.stat().st_size == 0:
        return "zero-size file"
    return None


@dataclass(frozen=True)
class Task:
    """One file to check. ``prepared`` is where converted copies go."""

    rel: str
    path: str
    prepared: str
    mask_rel: str | None = None
    mask_path: str | None = None


def check_file(task: Task) -> dict:
    """Decode, convert if needed, hash. Returns a dict with ``status`` (ok/converted/dropped),
    ``reason``, ``image`` (manifest path, ``@prepared/...`` for a converted copy), ``width``,
    ``height``, ``sha256``, ``ahash`` and the mask outcome (``mask``, ``mask_status``, ``mask_reason``).
    Never raises for a bad file: the report needs the reason, not a traceback."""
    out = {"rel": task.rel, "image": task.rel, "status": "ok", "reason": None,
           "width": None, "height": None, "sha256": None, "ahash": None,
           "mask": task.mask_rel, "mask_status": "ok", "mask_reason": None}
    try:
        data = Path(task.path).read_bytes()
    except OSError as exc:
        return {**out, "status": DROPPED, "reason": f"cannot read file ({exc.strerror or exc})"}
    if not data:
        return {**out, "status": DROPPED, "reason": "zero-size file"}
    out["sha256"] = hashlib.sha256(data).hexdigest()
    try:
        img = load_bytes(data, what="image")
        rgb, note = to_rgb(img)
    except ImageDecodeError as exc:
        return {**out, "status": DROPPED, "reason": str(exc).removeprefix("image: ")}
    if note is not None:
        conv_rel = f"{CONVERTED_DIR}/{PurePosixPath(task.rel).with_suffix('.png')}"
        dst = Path(task.prepared) / conv_rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        rgb.save(dst, format="PNG")
        out.update(status=CONVERTED, reason=note, image=PREPARED_PREFIX + conv_rel)
    out["width"], out["height"] = rgb.size
    out["ahash"] = str(imagehash.average_hash(rgb))
    if task.mask_rel is not None:
        out.update(_check_mask(task, rgb.size))
    return out


def _check_mask(task: Task, size: tuple[int, int]) -> dict:
    try:
        mask = load_bytes(Path(task.mask_path).read_bytes(), what="mask")
    except FileNotFoundError:
        return {"mask": None, "mask_status": FLAGGED, "mask_reason": f"mask {task.mask_rel} not found; kept without mask"}
    except (OSError, ImageDecodeError) as exc:
        return {"mask": None, "mask_status": FLAGGED, "mask_reason": f"mask unreadable ({exc}); kept without mask"}
    if mask.size != size:
        return {"mask": None, "mask_status": FLAGGED,
                "mask_reason": f"mask size {mask.size} != image size {size}; kept without mask"}
    orig_mode = mask.mode
    if mask.mode in ("I;16", "I;16B", "I;16L", "I", "F", "RGB", "RGBA", "P", "LA"):
        mask = to_rgb(mask)[0].convert("L")
    arr = np.asarray(mask.convert("L"))
    values = np.unique(arr)
    stray = np.setdiff1d(values, MASK_LEVELS)
    if stray.size == 0 and orig_mode == "L":
        return {}
    # Snap every pixel to the nearest level: anti-aliasing or JPEG-like noise at the contours.
    snapped = MASK_LEVELS[np.abs(arr[..., None].astype(np.int16) - MASK_LEVELS).argmin(-1)]
    rel = f"{MASKS_DIR}/{PurePosixPath(task.mask_rel).with_suffix('.png')}"
    dst = Path(task.prepared) / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(snapped, "L").save(dst, format="PNG")
    changed = int((snapped != arr).sum())
    reason = (f"mask grey levels {stray.tolist()[:8]}{'...' if stray.size > 8 else ''} snapped to "
              f"{{0,128,255}} ({changed} px)") if stray.size else f"mask mode {orig_mode} converted to L"
    return {"mask": PREPARED_PREFIX + rel, "mask_status": CONVERTED, "mask_reason": reason}


def resolve_workers(workers: int | str | None, n_items: int) -> int:
    """'auto': one process per core (at most 4) when there is enough work to repay the start-up."""
    if workers in (None, "auto"):
        if n_items < 400:
            return 1
        return max(1, min(4, os.cpu_count() or 1))
    workers = int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1 or 'auto', got {workers}")
    return workers


def check_files(tasks: Iterable[Task], workers: int | str | None = "auto", desc: str = "checking images") -> list[dict]:
    tasks = list(tasks)
    n = resolve_workers(workers, len(tasks))
    if n == 1:
        return [check_file(t) for t in tqdm(tasks, desc=desc, unit="img", leave=False)]
    chunk = max(8, min(128, len(tasks) // (n * 8) or 1))
    with ProcessPoolExecutor(max_workers=n) as pool:
        return list(tqdm(pool.map(check_file, tasks, chunksize=chunk), total=len(tasks), desc=desc,
                         unit="img", leave=False))
