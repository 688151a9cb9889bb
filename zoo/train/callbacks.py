"""Per-epoch hooks for families (guide targets, curve fits, extra plots...).

A callback subclasses :class:`Callback` and overrides the hooks it needs. Every hook gets the
:class:`~zoo.train.trainer.Trainer`, through which it can

* read and add scalar entries to ``trainer.epoch_metrics`` (logged with the epoch, usable as the
  early-stopping ``monitor``),
* ask to stop: ``trainer.should_stop = True`` (the epoch finishes and is checkpointed),
* embed any loader: ``trainer.embed(loader) -> (embeddings, labels)`` as numpy arrays, or reuse the
  augmentation-free training embeddings the validation step already computed:
  ``trainer.train_embeddings()`` (the model's output, computed at most once per epoch;
  ``trainer.last_train_embeddings`` is what the SVM stage saw, the same unless ``represent="features"``),
* reach the loss under its wrappers: ``trainer.loss_fn.unwrap()``.

Hook order per epoch: ``on_epoch_start`` -> batches (``on_batch_end`` each) -> validation ->
``on_epoch_end`` -> early stopping -> logger -> checkpoint. State a callback needs after a resume
goes in ``state_dict()`` / ``load_state_dict()`` (saved in every checkpoint; keep it to tensors,
numpy arrays and plain Python values).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import FitResult, Trainer


class Callback:
    """Base class; every hook is a no-op."""

    def on_fit_start(self, trainer: "Trainer") -> None: ...

    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None: ...

    def on_batch_end(self, trainer: "Trainer", epoch: int, batch: int, loss: float) -> None: ...

    def on_epoch_end(self, trainer: "Trainer", epoch: int, metrics: dict[str, float]) -> None: ...

    def on_fit_end(self, trainer: "Trainer", result: "FitResult") -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    @property
    def state_key(self) -> str:
        """Name of this callback's entry in a checkpoint (class name unless overridden)."""
        return type(self).__qualname__


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=lambda t, e, m: ...)``."""

    HOOKS = ("on_fit_start", "on_epoch_start", "on_batch_end", "on_epoch_end", "on_fit_end")

    def __init__(self, name: str = "LambdaCallback", **hooks: Callable[..., Any]) -> None:
        unknown = set(hooks) - set(self.HOOKS)
        if unknown:
            raise ValueError(f"unknown hook(s) {sorted(unknown)}; valid hooks: {', '.join(self.HOOKS)}")
        self._name = name
        for hook, fn in hooks.items():
            setattr(self, hook, fn)

    @property
    def state_key(self) -> str:
        return self._name


def state_keys(callbacks: list[Callback]) -> list[str]:
    """Unique checkpoint keys (``Name``, ``Name#2`` ... when a class is used twice)."""
    seen: dict[str, int] = {}
    keys = []
    for cb in callbacks:
        key = cb.state_key
        seen[key] = seen.get(key, 0) + 1
        keys.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return keys
