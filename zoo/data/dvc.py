"""Reading what DVC recorded about a dataset folder, without importing DVC itself.

A run records the DVC md5 of the raw data it trained on (``dataset_digest`` tag). DVC writes that
hash in ``dvc.lock`` (stage outputs, e.g. the synthetic set) and in ``*.dvc`` files (``dvc add`` /
``dvc import-url``); both are plain YAML, so reading them is cheaper and steadier than going
through DVC's Python API (which is not a public, stable interface).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from zoo.paths import project_dir

# Folders that never hold .dvc files worth reading (and may be huge).
_SKIP = {".git", ".dvc", "__pycache__", "mlruns", "mlartifacts", "node_modules", ".venv", "prepared"}
_MAX_DEPTH = 3


def tracked_outputs(project: str | Path | None = None) -> dict[Path, str]:
    """``{absolute output path: md5}`` for every output recorded in ``dvc.lock`` and in the
    ``*.dvc`` files of the project (searched a few folder levels deep)."""
    project = Path(project or project_dir()).resolve()
    found: dict[Path, str] = {}
    lock = project / "dvc.lock"
    if lock.is_file():
        data = _load(lock) or {}
        for stage in (data.get("stages") or {}).values():
            for out in stage.get("outs") or []:
                if out.get("md5") and out.get("path"):
                    found[(project / out["path"]).resolve()] = out["md5"]
    for dvcfile in _dvc_files(project):
        data = _load(dvcfile) or {}
        for out in data.get("outs") or []:
            if out.get("md5") and out.get("path"):
                found[(dvcfile.parent / out["path"]).resolve()] = out["md5"]
    return found


def dvc_md5(path: str | Path, project: str | Path | None = None) -> str | None:
    """md5 DVC recorded for ``path`` or for the tracked folder containing it; None if untracked."""
    path = Path(path).resolve()
    best: tuple[int, str] | None = None
    for out, md5 in tracked_outputs(project).items():
        if path == out or out in path.parents:
            depth = len(out.parts)
            if best is None or depth > best[0]:
                best = (depth, md5)
    return best[1] if best else None


def _dvc_files(project: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(project):
        depth = len(Path(dirpath).relative_to(project).parts)
        dirnames[:] = [] if depth >= _MAX_DEPTH else [d for d in dirnames if d not in _SKIP and not d.startswith(".")]
        out.extend(Path(dirpath) / f for f in filenames if f.endswith(".dvc"))
    return sorted(out)


def _load(path: Path):
    try:
        with path.open() as fh:
            return yaml.safe_load(fh)
    except (OSError, yaml.YAMLError):
        return None
