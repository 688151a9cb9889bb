"""Embedding losses, selected by name through ``LOSSES``.

```python
from zoo.losses import LOSSES, create_loss
loss = create_loss("triplet")                       # TML(margin 0.1) + 0.001 * mean ||e||
loss = create_loss("triplet", margin=0.2, type_of_triplets="semihard", norm_weight=0)
loss = create_loss("inverse_umap", alpha=0.2, ...)  # guided: gets a TripletLoss built from
                                                    # margin / type_of_triplets / distance
```
One small file per loss; each registers itself with ``@LOSSES.register("<name>")``. Guided losses
subclass :class:`GuidedLoss` (see :mod:`zoo.losses.base` for how to write one).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

from torch import nn

from zoo.registry import Registry

LOSSES: Registry = Registry("loss")

from .base import EmbeddingLoss, GuidedLoss  # noqa: E402  (LOSSES must exist before loss modules import it)
from .norm import DEFAULT_NORM_WEIGHT, EmbeddingNormPenalty, NormPenalized  # noqa: E402
from .triplet import TRIPLET_TYPES, TripletLoss  # noqa: E402

LOSSES.add("triplet", TripletLoss)

# Every module of this package is imported, so each loss registers itself (found, not listed):
# adding a loss is adding a file with a decorated class. A module that fails to import raises.
for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")

_TRIPLET_KEYS = ("margin", "type_of_triplets", "distance")


def create_loss(name: str, *, norm_weight: float = DEFAULT_NORM_WEIGHT, **kwargs: Any) -> nn.Module:
    """Build the loss registered as ``name`` and add the embedding-norm penalty.

    For a :class:`GuidedLoss` without an explicit ``triplet=``, the keys ``margin``,
    ``type_of_triplets`` and ``distance`` build its :class:`TripletLoss`. ``norm_weight=0`` leaves
    the penalty out.
    """
    cls = LOSSES.get(name)
    if inspect.isclass(cls) and issubclass(cls, GuidedLoss) and "triplet" not in kwargs:
        triplet_kw = {k: kwargs.pop(k) for k in _TRIPLET_KEYS if k in kwargs}
        kwargs["triplet"] = TripletLoss(**triplet_kw)
    try:
        signature = inspect.signature(cls)
        signature.bind(**kwargs)
    except TypeError as exc:
        accepted = [p for p in signature.parameters if p not in ("self", "args", "kwargs")]
        raise ValueError(f"loss {name!r}: {exc}. It accepts: {', '.join(accepted) or 'no parameters'}") from None
    loss = cls(**kwargs)
    if float(norm_weight) != 0.0:  # a negative weight is rejected by EmbeddingNormPenalty
        loss = NormPenalized(loss, float(norm_weight))
    return loss


__all__ = [
    "DEFAULT_NORM_WEIGHT", "EmbeddingLoss", "EmbeddingNormPenalty", "GuidedLoss", "LOSSES",
    "NormPenalized", "TRIPLET_TYPES", "TripletLoss", "create_loss",
]
