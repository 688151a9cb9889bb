"""Log a trained :class:`~zoo.models.ZooModel` (any kind) as an MLflow pyfunc (models-from-code).

```python
with start_run("tml", dataset=ds, fold=0) as run:
    ...
    info = log_zoo_model(model)                          # into the active run
    register(run.run_id, "tml", info.model_uri, tags)    # zoo.tracking.registry
```

Signature. Outputs are the model's declared ``output_schema()``; params its ``params_schema()``
(e.g. ``return_embedding``, default false). The *input* schema is deliberately left out: MLflow
enforces a column-based input schema by first converting the input to a DataFrame, which rejects
the (N, H, W, 3) uint8 batches of the README contract before the model sees them. The input
contract is instead carried by the input example (a base64 PNG in column ``image``, also saved as
``serving_input_example.json``), the model metadata (``input``), and checked by the model itself
with errors that name the row.

Code. The model holds only ``pyfunc_model.py``; it imports the installed ``zoo`` package (which
``mlflow models serve --env-manager local`` inside the project's environment has). Pass
``bundle_code=True`` to also copy the ``zoo`` package into the model (``code_paths``) for hosts
without marrow-zoo installed — at the price of that copy shadowing any installed version there.
The model folder itself is data only (see docs/serving.md, trust boundary).
"""

from __future__ import annotations

import base64
import io
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from zoo.models.zoo_model import ZooModel, load_zoo_model

PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
DEFAULT_MODEL_CONFIG = {"device": "auto", "predict_batch_size": 64}
INPUT_DESCRIPTION = ("DataFrame with column 'image' holding file paths or base64-encoded PNG/JPEG "
                     "bytes, or an ndarray batch (N, H, W, 3) uint8; predict param return_embedding")
# What the model needs where it is loaded; versions pinned to the training environment.
_RUNTIME_PACKAGES = ("torch", "torchvision", "timm", "scikit-learn", "skops", "safetensors", "pandas", "numpy",
                     "pillow", "pyyaml", "mlflow")
ARTIFACT = "zoo_model"  # the pyfunc artifact holding the ZooModel folder


def png_base64(image: np.ndarray) -> str:
    """Base64 text of a PNG of an (H, W, 3) uint8 array (the wire format of the serving API)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def example_image(size: int = 32) -> np.ndarray:
    """A small deterministic RGB image: a pale background with a purple disc (a cartoon cell)."""
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    img = np.full((size, size, 3), (236, 226, 232), dtype=np.uint8)
    img[r < size * 0.35] = (150, 90, 170)
    img[r < size * 0.18] = (90, 40, 120)
    return img


def input_example(size: int = 32) -> pd.DataFrame:
    return pd.DataFrame({"image": [png_base64(example_image(size))]})


def signature_for(model: ZooModel):
    """Outputs and predict params as the model declares them (no input schema: see above)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    from mlflow.types import DataType
    from mlflow.types.schema import Array

    def col_type(dtype):  # "array<string>": a list per row (the trust layer's prediction_set)
        return Array(DataType[dtype[6:-1]]) if dtype.startswith("array<") else dtype

    outputs = Schema([ColSpec(col_type(dtype), name) for name, dtype in model.schema_with_trust()])
    specs = [ParamSpec(name, dtype, default) for name, dtype, default in model.params_with_trust()]
    return ModelSignature(inputs=None, outputs=outputs, params=ParamSchema(specs) if specs else None)


def pip_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in _RUNTIME_PACKAGES:
        try:
            v = version(pkg)
        except PackageNotFoundError:
            continue
        reqs.append(f"{pkg}=={v.split('+')[0]}")
    try:
        reqs.append(f"marrow-zoo=={version('marrow-zoo')}")
    except PackageNotFoundError:
        pass
    return reqs


def log_zoo_model(
    model: ZooModel | str | Path,
    name: str = "model",
    *,
    model_config: Mapping[str, Any] | None = None,
    bundle_code: bool = False,
    metadata: Mapping[str, Any] | None = None,
):
    """Log ``model`` (a ZooModel, or a saved model folder) as a pyfunc model in the active run;
    returns MLflow's ``ModelInfo`` (``.model_uri`` is what ``registry.register`` takes)."""
    import mlflow

    if mlflow.active_run() is None:
        raise ValueError("log_zoo_model logs into the active run: call it inside "
                         "`with zoo.tracking.runs.start_run(...)`")
    config = {**DEFAULT_MODEL_CONFIG, **dict(model_config or {})}
    from zoo.evaluate.trust import DEFAULT_SETTINGS as TRUST_SETTINGS

    unknown = set(config) - set(DEFAULT_MODEL_CONFIG) - set(TRUST_SETTINGS)
    if unknown:
        raise ValueError(f"unknown model_config keys {sorted(unknown)}; known: {sorted(DEFAULT_MODEL_CONFIG)}")
    with tempfile.TemporaryDirectory(prefix="zoo-model-") as tmp:
        if isinstance(model, ZooModel):
            folder = model.save(Path(tmp) / ARTIFACT)
        else:
            folder = Path(model)
            model = load_zoo_model(folder, device="cpu")
        if model.trust is not None:  # declared so load_model(model_config={"coverage": …}) may set them
            config = {**model.trust.settings, **config}
        elif set(config) & set(TRUST_SETTINGS):
            raise ValueError(f"model_config {sorted(set(config) & set(TRUST_SETTINGS))} needs a calibrated model "
                             "(model.trust is None: no prediction sets to configure)")
        example = input_example(model.img_size)
        code_paths = [str(Path(__file__).resolve().parents[1])] if bundle_code else None
        training = {k: v for k, v in model.training.items() if v is not None}
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(PYFUNC_FILE),
            artifacts={ARTIFACT: str(folder)},
            model_config=config,
            signature=signature_for(model),
            input_example=example,
            pip_requirements=pip_requirements(),
            code_paths=code_paths,
            metadata={"zoo_family": model.family, "zoo_kind": model.kind, "classes": list(model.classes),
                      "input": INPUT_DESCRIPTION, "img_size": model.img_size,
                      **{f"training_{k}": str(v) for k, v in training.items()}, **dict(metadata or {})},
        )


#: the name of the first version (an embedding_svm model was called a pipeline)
log_pipeline = log_zoo_model
