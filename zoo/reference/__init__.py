"""Adaptive reference cells (``003_*.txt``): features -> reducer -> bank (+ SOM) -> references.

```python
from zoo.reference import FeatureExtractor, resolve_source, create_reducer, ReferenceBank
src = resolve_source("models:/zoo-tml/3")            # or a saved model folder, timm:<arch>, none
feats = FeatureExtractor(src.module, layer="pre_logits", img_size=src.img_size)(paths)
red = create_reducer("vae", latent=50).fit(feats)     # or "pca" (explained_variance_share_)
bank = ReferenceBank.build(red.transform(feats), labels, ids, ahash=ahashes, som=BatchSOM(20, 20).fit(...))
res = bank.query(red.transform(query_feats), ahashes=query_ahashes, k=8)      # MSE or method="som"
```
"""

from .bank import QueryResult, ReferenceBank, image_ahash
from .features import FeatureCache, FeatureExtractor, Source, resolve_source
from .metrics import precision_at_k, rotmes
from .reducers import REDUCERS, PCAReducer, VAEReducer, create_reducer, load_reducer

__all__ = ["FeatureCache", "FeatureExtractor", "PCAReducer", "QueryResult", "REDUCERS", "ReferenceBank",
           "Source", "VAEReducer", "create_reducer", "image_ahash", "load_reducer", "precision_at_k",
           "resolve_source", "rotmes"]
