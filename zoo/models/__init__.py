"""Networks and model kinds.

```python
from zoo.models import create_encoder, Encoder
enc = create_encoder("resnet18", embedding_dim=256, dropout=0.05, pretrained=None)
same = Encoder.from_config(enc.config); same.load_state_dict(enc.state_dict())

from zoo.models import ZOO_MODELS, MODEL_EXTRAS, ZooModel, load_zoo_model
model = load_zoo_model("path/to/model_folder", device="cpu")   # kind resolved by registry name
```

Model kinds (``ZOO_MODELS``) and extras (``MODEL_EXTRAS``) register themselves in the modules of
this package, which are all imported here (found, not listed): a new kind is a new file.
"""

from .encoder import Encoder, PretrainedWeightsError, create_encoder, load_backbone_checkpoint
from .zoo_model import (MODEL_EXTRAS, ZOO_MODELS, BadImageError, ModelExtras, ModelInputError, UnsafeArtifactError,
                        ZooModel, discover, load_zoo_model)

discover()

__all__ = ["BadImageError", "Encoder", "MODEL_EXTRAS", "ModelExtras", "ModelInputError", "PretrainedWeightsError",
           "UnsafeArtifactError", "ZOO_MODELS", "ZooModel", "create_encoder", "discover", "load_backbone_checkpoint",
           "load_zoo_model"]
