"""Self-organizing maps: Kohonen's batch algorithm in torch, its maps (U-matrix, hit maps) and plots.

```python
from zoo.som import BatchSOM
som = BatchSOM(20, 20, epochs=20).fit(X)          # PCA init, Gaussian radius 10 -> 0.5
som.quantization_error(X), som.topographic_error(X), som.umatrix(), som.hit_map(X, y)
```
"""

from .batch_som import DECAYS, INITS, BatchSOM, recommended_size, schedule

__all__ = ["BatchSOM", "DECAYS", "INITS", "recommended_size", "schedule"]
