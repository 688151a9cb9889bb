"""Networks: image encoders (timm backbone + embedding head).

```python
from zoo.models import create_encoder, Encoder
enc = create_encoder("resnet18", embedding_dim=256, dropout=0.05, pretrained=None)
same = Encoder.from_config(enc.config); same.load_state_dict(enc.state_dict())
```
"""

from .encoder import Encoder, PretrainedWeightsError, create_encoder, load_backbone_checkpoint

__all__ = ["Encoder", "PretrainedWeightsError", "create_encoder", "load_backbone_checkpoint"]
