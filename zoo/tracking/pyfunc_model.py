"""The pyfunc of every zoo model, as an MLflow *models-from-code* file.

``zoo.tracking.packaging.log_zoo_model`` logs this file as ``python_model`` with the model folder
as artifact ``zoo_model`` and ``model_config={"device": "auto", "predict_batch_size": 64}``; MLflow
copies it next to the model and runs it at load time, so the model holds code (this file, from the
installed ``zoo`` package) + data (the folder), never a pickled Python object. The folder is read
by :func:`zoo.models.load_zoo_model`, which resolves the model kind by registry name only.

Input (README): a DataFrame with column ``image`` holding file paths or base64-encoded PNG/JPEG
bytes (what ``mlflow models serve`` receives as JSON), or an ndarray batch (N, H, W, 3) uint8.
Output: the model's declared columns (``output_schema``); predict ``params`` (e.g.
``return_embedding``) are passed through. A bad row fails with an error naming the row.
"""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from zoo.models.zoo_model import IMAGE_COLUMN, ModelInputError, to_images  # noqa: F401  (public here)


class InvalidModelInput(MlflowException, ValueError):
    """A bad input row, as MLflow's scoring server reports it (HTTP 400 with this message) and
    still a ``ValueError`` for Python callers."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


class ZooPyfuncModel(PythonModel):
    """Loads a :class:`zoo.models.ZooModel` on the device of ``model_config``."""

    def load_context(self, context):
        from zoo.models import load_zoo_model

        config = dict(context.model_config or {})
        self.batch_size = int(config.get("predict_batch_size", 64))
        folder = context.artifacts.get("zoo_model") or context.artifacts.get("pipeline")
        self.model = load_zoo_model(folder, device=str(config.get("device", "auto")))
        if self.model.trust is not None:  # coverage / decision / max_set_size chosen at load
            self.model.trust.settings = self.model.trust.with_settings(config)
        self.param_names = {name for name, _, _ in self.model.params_with_trust()}
        import inspect

        takes = inspect.signature(self.model.predict).parameters
        self.extra = {"batch_size": self.batch_size} if "batch_size" in takes else {}
        from zoo.tracking.provenance import announce

        announce(self.model)  # one line naming the training dataset (stderr)

    # The input hint is pd.DataFrame although an (N, H, W, 3) ndarray is taken too: MLflow treats
    # exactly pd.DataFrame / pd.Series / np.ndarray hints as "no validation, no signature inference"
    # (the zoo logs its own signature), while no hint makes MLflow warn on every load (with raw ANSI
    # codes) and a Union hint switches on validation that refuses one of the two inputs. A warnings
    # filter cannot silence it: MLflow resets the filters around that check.
    def predict(self, context, model_input: pd.DataFrame, params=None):
        from zoo.tracking.provenance import warn_about_input

        params = dict(params or {})
        try:
            unknown = sorted(set(params) - self.param_names)
            if unknown:
                raise ModelInputError(f"unknown predict param(s) {unknown}; this model takes "
                                      f"{sorted(self.param_names)}")
            images = to_images(model_input)
            warn_about_input(self.model, images)
            return self.model.predict_with_trust(images, **self.extra, **params)
        except ValueError as exc:
            # MLflow's scoring server puts an MlflowException's message (not a ValueError's)
            # into the HTTP 400 body's `message`; this is the message naming the bad row.
            raise InvalidModelInput(str(exc)) from exc


mlflow.models.set_model(ZooPyfuncModel())
