"""Early stopping on a monitored metric with patience (papers: macro-F on validation, 50)."""

from __future__ import annotations

import math
from typing import Any


class EarlyStopping:
    """Track the best value of a metric; ``should_stop`` once ``patience`` epochs in a row pass
    without an improvement larger than ``min_delta`` (``patience=None``: never stop). A NaN value
    never counts as an improvement."""

    def __init__(self, patience: int | None, mode: str = "max", min_delta: float = 0.0) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        if patience is not None and int(patience) < 1:
            raise ValueError(f"patience must be >= 1 epoch (or None to disable early stopping), got {patience}")
        self.patience = None if patience is None else int(patience)
        self.mode = mode
        self.min_delta = abs(float(min_delta))
        self.best: float = -math.inf if mode == "max" else math.inf
        self.best_epoch: int | None = None
        self.bad_epochs = 0

    def is_improvement(self, value: float) -> bool:
        if value is None or math.isnan(value):
            return False
        if self.best_epoch is None:
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def step(self, value: float, epoch: int) -> bool:
        """Record ``value`` for ``epoch``; returns True when it is a new best."""
        value = float("nan") if value is None else float(value)
        if self.is_improvement(value):
            self.best, self.best_epoch, self.bad_epochs = value, int(epoch), 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
                "patience": self.patience, "mode": self.mode, "min_delta": self.min_delta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])
        self.best_epoch = state["best_epoch"]
        self.bad_epochs = int(state["bad_epochs"])
