"""Where numba keeps the compiled kernels of umap-learn and pynndescent.

Their kernels compile on first use (tens of seconds on 2 cores). numba writes the result of a
``cache=True`` function next to the package's source when it can; in a read-only site-packages it
cannot, and every process would compile again. :func:`use_disk_cache` points ``NUMBA_CACHE_DIR`` at
a writable folder (``~/.cache/marrow-zoo/numba``, or ``$XDG_CACHE_HOME/marrow-zoo/numba``) unless
the user set one. It must run before numba is imported: numba reads the variable once, at import.

Most of umap-learn's kernels are not ``cache=True`` at all (``smooth_knn_dist``,
``compute_membership_strengths``, ``fast_knn_indices``, the layout epoch...), so even with a disk
cache every process paid ~15 s compiling them for the first UMAP of a few hundred points.
:func:`import_umap` turns numba's own caching on for them (``Dispatcher.enable_caching``, what
``cache=True`` does at decoration): a fresh process then fits that UMAP in ~3 s instead of ~29 s
(760 x 256 points, 1 thread). This is the one thing written here by hand: umap-learn has no switch
for it.
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


_UMAP_PACKAGES = ("umap", "pynndescent")


def import_umap():
    """``import umap`` with the disk cache on and every umap-learn/pynndescent kernel cached in it.

    Use this instead of ``import umap`` so that the first UMAP of each process loads compiled
    kernels instead of compiling them."""
    use_disk_cache()
    import umap

    cache_kernels(_UMAP_PACKAGES)
    return umap


def cache_kernels(packages: tuple[str, ...]) -> int:
    """Turn on numba's disk caching for the jitted functions of the imported modules of
    ``packages`` that were decorated without ``cache=True``. Returns how many it turned on;
    calling it again turns on none. A kernel numba cannot cache is left as it was."""
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    turned_on = 0
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in packages:
            continue
        for obj in list(vars(module).values()):
            # ``_cache`` is a NullCache exactly when the function was jitted without cache=True.
            if isinstance(obj, Dispatcher) and isinstance(getattr(obj, "_cache", None), NullCache):
                try:
                    obj.enable_caching()
                except RuntimeError:  # no writable place for this file's cache: it compiles as before
                    continue
                turned_on += 1
    return turned_on
