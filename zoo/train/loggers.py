"""Where the Trainer sends per-epoch metrics. The Trainer does not import MLflow: the caller passes
any object with ``log_metrics(metrics, step)`` (the tracking room's MLflow run logger does)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class MetricsLogger(Protocol):
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...


class NullLogger:
    """Default: metrics stay in the Trainer's history only."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        return None
