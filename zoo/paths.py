"""Where the zoo keeps things on disk.

Everything is relative to the *project directory*: ``$ZOO_HOME`` if set, else the nearest parent
of the working directory that holds an ``MLproject`` file, else the working directory. Pinning
this down matters because ``mlflow run`` changes directory, and MLflow would otherwise put
artifacts wherever the process happens to be.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_dir() -> Path:
    env = os.environ.get("ZOO_HOME")
    if env:
        return Path(env).expanduser().resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "MLproject").is_file() and (candidate / "zoo").is_dir():
            return candidate
    return here


def data_dir() -> Path:
    return Path(os.environ.get("ZOO_DATA_DIR") or project_dir() / "data").resolve()


def prepared_dir(name: str | None = None) -> Path:
    base = data_dir() / "prepared"
    return base / name if name else base


def shared_data_dir() -> Path | None:
    """The real public datasets kept beside the checkout (``../shared/data``), if present."""
    env = os.environ.get("ZOO_SHARED_DATA")
    # An explicit setting wins, even when it points nowhere: that is how a user (or a test)
    # says "there is no shared data here".
    candidate = Path(env).expanduser() if env else project_dir().parent / "shared" / "data"
    return candidate.resolve() if candidate.is_dir() else None
