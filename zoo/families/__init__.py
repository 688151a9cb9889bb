"""Model families, selected by name through ``FAMILIES`` (like timm's ``create_model``).

```python
from zoo.families import train
result = train("guided", {"guide": "fr_sim_mat", "epochs": "5", "limit": "400"})
```
Parameters are the entry-point parameters of the MLproject (strings or typed values):
:data:`zoo.families.params.COMMON_PARAMS` and each family's ``params`` declarations. The protocol
a family implements is :class:`zoo.families.base.Family` (docs/families.md).

Families register themselves on import; every module of this package is imported here (found,
not listed), so adding a family is adding a file with one decorated class.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Mapping

from zoo.registry import Registry

FAMILIES: Registry = Registry("family")


def train(family: str, params: Mapping[str, Any] | None = None, **kwargs: Any):
    """Train ``family`` with entry-point ``params``; returns a :class:`~zoo.families.runner.TrainingResult`.
    ``kwargs``: ``progress``, ``callbacks`` (extra Trainer callbacks) — see ``run_training``."""
    from zoo.families.runner import run_training

    return run_training(family, dict(params or {}), **kwargs)


for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")
