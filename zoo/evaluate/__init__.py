"""Evaluation: the SVM stage, the papers' metrics, and plots.

```python
from zoo.evaluate import SVMStage, classification_metrics, plot_confusion_matrix, plot_embedding_map
svm = SVMStage(max_train=3000).fit(train_emb, train_y)
m = classification_metrics(test_y, svm.predict(test_emb), classes, severity=S, ontology=ont)
fig = plot_confusion_matrix(m["confusion_matrix"], m["classes"], ontology=ont)
```
"""

from .embedding_map import reduce_2d, umap_available
from .metrics import as_class_ids, classification_metrics, scalar_metrics, severity_array, tolerance_mask
from .plots import plot_confusion_matrix, plot_embedding_map
from .svm import SVMStage

__all__ = [
    "SVMStage", "as_class_ids", "classification_metrics", "plot_confusion_matrix", "plot_embedding_map",
    "reduce_2d", "scalar_metrics", "severity_array", "tolerance_mask", "umap_available",
]
