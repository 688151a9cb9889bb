"""Autoencoders that suppress surrounding cells (paper ``002``): suppression methods, training on
the zoo's Trainer, reconstruction metrics inside the cell contour, representation probes, panels
and the paper's parameter grid.

```python
from zoo.autoencoder import SUPPRESSIONS, create_suppression
SUPPRESSIONS.names()          # crop, mask_fixed, mask_learned, mask_sampled, noise, none
```
The family (``zoo train autoencoder``) lives in :mod:`zoo.families.autoencoder`.
"""

from .radial import REFERENCE_SIZE, distance_map, mask_weights, noise_std_map
from .suppression import SUPPRESSIONS, Suppression, create_suppression

__all__ = ["REFERENCE_SIZE", "SUPPRESSIONS", "Suppression", "create_suppression", "distance_map", "mask_weights",
           "noise_std_map"]
