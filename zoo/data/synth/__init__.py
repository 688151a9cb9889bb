"""Synthetic bone marrow: procedurally rendered, Pappenheim-stained single-cell patches with a
known continuous maturity, the zoo's embedded default dataset.

```python
from zoo.data.synth import generate, sample_cells
generate("data/raw/synth")                 # 4,560 cells, 96 px, 15 classes, 12 slides
sample_cells(10_000, seed=0)               # the cell table alone (no pixels), for checks
```

Each cell is drawn from a maturity value within its lineage (``cells.py``: size, N/C ratio,
nucleus shape, chromatin, nucleoli, cytoplasm colour, granules); its class is that maturity
binned with logistic (fuzzy) borders (``sampling.py``); red cells, platelets, partial neighbours,
stain, light and camera come per simulated slide (``scene.py``). Numbers live in ``config.py``.
"""

from .config import VERSION
from .generate import generate
from .sampling import class_counts, class_frequencies, sample_cells, stages
from .scene import SlideStyle, make_slides, render_patch

__all__ = ["VERSION", "SlideStyle", "class_counts", "class_frequencies", "generate", "make_slides",
           "render_patch", "sample_cells", "stages"]
