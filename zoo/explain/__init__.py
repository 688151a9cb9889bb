"""Explanations of a classifier's decisions (seed 004, Fig. 5): Grad-CAM and SmoothGrad heat maps
and the per-class panels of correctly classified cells.

```python
from zoo.explain import EXPLAINERS, heatmaps, explanation_panel
maps = heatmaps(model, x, method="gradcam")            # (N, H, W) in [0, 1], the input's size
fig = explanation_panel(model, x, y_true, y_pred, classes)   # image / SmoothGrad / Grad-CAM per class
```
Methods are registry entries (``EXPLAINERS``): adding one is one decorated function
``fn(model, x, targets) -> (N, H, W)``.
"""

from .heatmaps import EXPLAINERS, gradcam, heatmaps, smoothgrad
from .panels import explanation_panel, pick_correct

__all__ = ["EXPLAINERS", "explanation_panel", "gradcam", "heatmaps", "pick_correct", "smoothgrad"]
