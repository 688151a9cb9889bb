"""Embedding guides (paper 000): class graphs from the expert matrices, 2-D layouts, a registry.

```python
from zoo.guides import GUIDES, create_guide, save_guide_artifacts
guide = create_guide("fr_sim_mat")                   # 15 classes, finite, distinct, |x| <= 1
guide = create_guide("drl_sev", classes=subset, unknown="place")
save_guide_artifacts(guide, "out/")                  # out/guide.csv (class,x,y) + out/guide.png
```
"""

from __future__ import annotations

import importlib
import pkgutil

from .adjacency import adjacency_from_matrix, knowledge_adjacency
from .alignment import GuideProjector, SimilarityTransform, fit_similarity
from .factory import GUIDES, UNKNOWN_POLICIES, create_guide, describe, resolve_guide
from .guide import Guide
from .plot import plot_guide, plot_guides, save_guide_artifacts

# Every module of this package is imported, so guides registered in any of them are found (not
# listed): adding a guide is adding a decorated factory in a new file.
for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")

__all__ = [
    "GUIDES", "Guide", "GuideProjector", "SimilarityTransform", "UNKNOWN_POLICIES", "adjacency_from_matrix",
    "create_guide", "describe", "fit_similarity", "resolve_guide", "knowledge_adjacency", "plot_guide", "plot_guides",
    "save_guide_artifacts",
]
