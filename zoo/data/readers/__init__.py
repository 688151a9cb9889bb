"""Dataset readers: one function per on-disk layout, selected by name through ``READERS``.

A reader lists a dataset folder; it does not open images (cleaning, hashing and label mapping
happen once, in :func:`zoo.data.ingest.ingest`, for every reader alike)::

    from zoo.data.readers import READERS

    @READERS.register("mylab", dataset="mylab")      # dataset = alias namespace in the ontology
    def read_mylab(root, **opts) -> pd.DataFrame:
        ...  # columns: image (relative to root), source_label [, group, mask, maturity]

Rows may point at files the reader could not label (``source_label`` missing) or that are not
images: ingest reports and drops them instead of failing, so a stray ``.DS_Store`` ends up in
the report rather than in a crash.
"""

from __future__ import annotations

import importlib
import pkgutil

from zoo.registry import Registry

READERS: Registry = Registry("reader")

# Every module of this package is imported, so each reader registers itself (found, not listed):
# adding a reader is adding a file with a decorated function.
for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")

from .base import READER_COLUMNS, REQUIRED_COLUMNS, check_reader_output, list_files  # noqa: E402

__all__ = ["READERS", "READER_COLUMNS", "REQUIRED_COLUMNS", "check_reader_output", "list_files"]
