"""The first name of the ``embedding_svm`` model kind: an encoder + SVM "pipeline".

The implementation is :class:`zoo.models.embedding_svm.EmbeddingSVMModel` (one kind of
:class:`zoo.models.ZooModel`); these names stay importable for code written against the first
version. New code imports from :mod:`zoo.models`.
"""

from zoo.models.embedding_svm import EmbeddingSVMModel as Pipeline
from zoo.models.zoo_model import MODEL_EXTRAS as PIPELINE_EXTRAS
from zoo.models.zoo_model import BadImageError
from zoo.models.zoo_model import ModelExtras as PipelineExtras

__all__ = ["BadImageError", "PIPELINE_EXTRAS", "Pipeline", "PipelineExtras"]
