"""marrow-zoo: an MLflow-tracked model zoo for hematology cell-image models."""

__version__ = "0.1.0"
