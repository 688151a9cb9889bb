"""Where numba keeps the compiled kernels of umap-learn and pynndescent.

Their ``cache=True`` functions compile on first use (tens of seconds on 2 cores). numba writes the
result next to the package's source when it can; in a read-only site-packages it cannot, and every
process would compile again. :func:`use_disk_cache` points ``NUMBA_CACHE_DIR`` at a writable folder
(``~/.cache/marrow-zoo/numba``, or ``$XDG_CACHE_HOME/marrow-zoo/numba``) unless the user set one.
It must run before numba is imported: numba reads the variable once, at import.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def use_disk_cache() -> None:
    """Set ``NUMBA_CACHE_DIR`` to the zoo's cache folder if numba is not imported yet and the
    variable is unset; silently keep numba's own choice when the folder cannot be created."""
    if "numba" in sys.modules or os.environ.get("NUMBA_CACHE_DIR"):
        return
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "marrow-zoo" / "numba"
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    os.environ["NUMBA_CACHE_DIR"] = str(base)
