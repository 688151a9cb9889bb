"""The NaN/inf guard: stop training with a clear message instead of training on garbage."""

from __future__ import annotations


class NonFiniteLossError(FloatingPointError):
    """The loss, the gradients, the weights or the embeddings became NaN/inf.

    Attributes ``what`` ("loss", "gradients", "weights", "embeddings"), ``epoch``, ``batch``
    (None outside a training batch) and ``value``.
    """

    def __init__(self, what: str, epoch: int, batch: int | None, value: float | str, lr: float | None = None):
        self.what, self.epoch, self.batch, self.value = what, epoch, batch, value
        where = f"epoch {epoch}, batch {batch}" if batch is not None else f"epoch {epoch}"
        hints = [
            f"lower the learning rate (lr={lr:g})" if lr is not None else "lower the learning rate",
            "set grad_clip (e.g. 1.0)",
            "check the input data for NaN/inf or constant images (normalisation by a zero std)",
            "check the loss for divisions by zero / log(0)",
        ]
        super().__init__(
            f"non-finite {what} ({value}) at {where}: training stopped so the model is not updated with it. "
            "Try: " + "; ".join(hints) + "."
        )
