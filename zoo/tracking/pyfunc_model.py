"""The pyfunc of every zoo pipeline, as an MLflow *models-from-code* file.

``zoo.tracking.packaging.log_pipeline`` logs this file as ``python_model`` with the pipeline folder
as artifact ``pipeline`` and ``model_config={"device": "auto", "predict_batch_size": 64}``; MLflow copies it
next to the model and runs it at load time, so the model holds code (this file) + data (the
folder), never a pickled Python object. It needs ``marrow-zoo`` installed where it is loaded.

Input (ARCHITECTURE.md): a DataFrame with column ``image`` holding file paths or base64-encoded
PNG/JPEG bytes (what ``mlflow models serve`` receives as JSON), or an ndarray batch (N, H, W, 3)
uint8. Output: ``label``, ``confidence``, ``p_<class>`` per class, family extras; ``embedding``
with ``params={"return_embedding": True}``. A bad row fails with an error naming the row.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

IMAGE_COLUMN = "image"


class ModelInputError(ValueError):
    """Input that is not a batch of images (wrong type, missing ``image`` column, bad array)."""


def to_images(model_input):
    """The batch of images in ``model_input``: a list of per-row values (paths, base64 strings,
    bytes, arrays) or a checked (N, H, W, 3) uint8 array."""
    from zoo.tracking.pipeline import Pipeline

    if isinstance(model_input, pd.DataFrame):
        if IMAGE_COLUMN not in model_input.columns:
            raise ModelInputError(
                f"model input has no {IMAGE_COLUMN!r} column (columns: {list(model_input.columns)}); "
                f"send a DataFrame with column {IMAGE_COLUMN!r} holding file paths or base64 PNG/JPEG, "
                "or an (N, H, W, 3) uint8 array")
        return model_input[IMAGE_COLUMN].tolist()
    if isinstance(model_input, pd.Series):
        return model_input.tolist()
    if isinstance(model_input, dict):
        if IMAGE_COLUMN not in model_input:
            raise ModelInputError(f"model input has no {IMAGE_COLUMN!r} key (keys: {list(model_input)})")
        return to_images(pd.DataFrame({IMAGE_COLUMN: list(model_input[IMAGE_COLUMN])}))
    if isinstance(model_input, np.ndarray):
        try:
            return Pipeline.check_batch(model_input)
        except ValueError as exc:
            raise ModelInputError(str(exc)) from None
    if isinstance(model_input, list):
        return model_input
    raise ModelInputError(
        f"model input must be a DataFrame with an {IMAGE_COLUMN!r} column or an (N, H, W, 3) uint8 "
        f"array, got {type(model_input).__name__}")


class ZooPipelineModel(PythonModel):
    """Loads a :class:`zoo.tracking.pipeline.Pipeline` on the device of ``model_config``."""

    def load_context(self, context):
        from zoo.tracking.pipeline import Pipeline

        config = dict(context.model_config or {})
        self.batch_size = int(config.get("predict_batch_size", 64))
        self.pipeline = Pipeline.load(context.artifacts["pipeline"], device=str(config.get("device", "auto")))

    # No type hints on purpose (MLflow warns about it): hints switch on MLflow's type-hint
    # validation, which takes either a DataFrame or an ndarray, and the contract takes both.
    def predict(self, context, model_input, params=None):
        params = params or {}
        return self.pipeline.predict(
            to_images(model_input),
            return_embedding=bool(params.get("return_embedding", False)),
            batch_size=self.batch_size,
        )


mlflow.models.set_model(ZooPipelineModel())
