"""Model families, selected by name through ``FAMILIES`` (like timm's ``create_model``).

```python
from zoo.families import train
result = train("guided", {"guide": "fr_sim_mat", "epochs": "5", "limit": "400"})
```
Parameters are the entry-point parameters of the MLproject (strings or typed values); see
:mod:`zoo.families.params` for the common ones and each family's ``param_names``.
"""

from __future__ import annotations

from typing import Any, Mapping

from zoo.registry import Registry

FAMILIES: Registry = Registry("family")


def train(family: str, params: Mapping[str, Any] | None = None, **kwargs: Any):
    """Train ``family`` with entry-point ``params``; returns a :class:`~zoo.families.runner.TrainingResult`."""
    from zoo.families.runner import run_training

    return run_training(family, dict(params or {}), **kwargs)


# Families register themselves on import.
from zoo.families import tml  # noqa: E402,F401
from zoo.families import guided  # noqa: E402,F401
