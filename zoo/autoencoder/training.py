"""Training an autoencoder with a suppression method on the zoo's Trainer.

```python
objective = AutoencoderObjective(create_suppression("mask_sampled", 64), ReconstructionLoss(beta=1))
trainer = AutoencoderTrainer(model, objective, loaders["train"], loaders["val"], epochs=10, patience=3,
                             svm=False, monitor="val_loss", mode="min",
                             validators=[ValidationLoss(loaders["val"]), ProbeCallback()])
trainer.fit()
```

The Trainer is built for embedding models; this subclass overrides only the two per-batch steps:
``compute_loss`` (denormalise the batch the data pipeline gives, apply the suppression method,
reconstruct, masked L1 + KL) and ``embed_batch`` (the representation of the evaluation view).
Labels in the batch are never used for training; the validation embeddings the Trainer computes
each epoch feed :class:`ProbeCallback` (labels for evaluation only).
"""

from __future__ import annotations

import logging
import time
from typing import Iterable

import numpy as np
import torch
from torch import nn

from zoo.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from zoo.losses.reconstruction import ReconstructionLoss
from zoo.train import Callback, Trainer

from .probe import probe_macro_f1
from .suppression import Suppression

log = logging.getLogger(__name__)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """The data pipeline's ImageNet-normalised batch back to [0, 1] (the reconstruction target)."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device, dtype=torch.float32).view(1, 3, 1, 1)
    return (images.float() * std + mean).clamp_(0.0, 1.0)


def to_normalized(x01: torch.Tensor) -> torch.Tensor:
    """[0, 1] images to the encoder's ImageNet-normalised input."""
    mean = torch.tensor(IMAGENET_MEAN, device=x01.device, dtype=x01.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x01.device, dtype=x01.dtype).view(1, 3, 1, 1)
    return (x01 - mean) / std


class AutoencoderObjective(nn.Module):
    """The loss_fn the Trainer optimises: suppression method (with the learned-radius head, whose
    parameters the Trainer picks up from the loss) + :class:`ReconstructionLoss`.

    ``objective(model, x01) -> scalar``; ``terms`` holds l1, kl, penalty and the mean radius (paper px) of
    the last call (the Trainer logs their epoch means as ``train_loss_<term>``)."""

    def __init__(self, suppression: Suppression, reconstruction: ReconstructionLoss):
        super().__init__()
        self.suppression = suppression
        self.reconstruction = reconstruction
        self.terms: dict[str, float] = {}

    def forward(self, model: nn.Module, x01: torch.Tensor) -> torch.Tensor:
        inp, target = self.suppression.prepare(x01)
        out = model(to_normalized(inp))
        weights = self.suppression.weights(target, out.mu)
        loss = self.reconstruction(out.recon.float(), target, out.mu, out.logvar, weights)
        terms = dict(self.reconstruction.terms)
        penalty = self.suppression.penalty()
        if penalty is not None:
            loss = loss + penalty
            terms["penalty"] = float(penalty.detach())
        radii = getattr(self.suppression, "last_radii", None)
        if radii is not None and weights is not None:
            terms["radius"] = float(radii.float().mean()) / self.suppression.scale  # paper px
        self.terms = terms
        return loss


class AutoencoderTrainer(Trainer):
    """:class:`zoo.train.Trainer` for autoencoders (pass ``svm=False`` and a monitor a callback
    provides, e.g. ``val_loss`` from :class:`ValidationLoss`).

    ``validators``: callbacks that score a validation (:class:`ValidationLoss`,
    :class:`ProbeCallback`), run inside it rather than after every epoch: they follow ``val_every``
    (an epoch that does not validate pays for neither), and a ``budget`` charges their time to
    validation, which its stop rule and adaptive spacing plan with, not to training."""

    def __init__(self, *args, validators: Iterable[Callback] = (), **kwargs):
        self.validators = list(validators)
        super().__init__(*args, **kwargs)

    def _validate(self, epoch: int) -> dict[str, float]:
        out = super()._validate(epoch)  # the training and validation representations
        for validator in self.validators:
            validator.on_epoch_end(self, epoch, out)
        return out

    def compute_loss(self, batch: tuple) -> torch.Tensor:
        return self.loss_fn(self.net, to_unit(batch[0]))

    def embed_batch(self, batch: tuple) -> torch.Tensor:
        view = self.loss_fn.suppression.eval_view(to_unit(batch[0]))
        return self.model.represent(to_normalized(view))


class ValidationLoss(Callback):
    """``val_loss`` (and ``val_loss_<term>``): the training objective on the validation loader in
    eval mode, with a fixed seed so stochastic methods (noise, sampled radius, crops) score every
    epoch on the same draws. Label-free: the early-stopping monitor of the family."""

    def __init__(self, loader: Iterable, seed: int = 0):
        self.loader, self.seed = loader, int(seed)

    def on_epoch_end(self, trainer, epoch, metrics):
        start = time.perf_counter()
        model, objective = trainer.model, trainer.loss_fn
        was = model.training, objective.training
        model.eval(), objective.eval()
        total, n, sums = 0.0, 0, {}
        devices = [trainer.device] if trainer.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices), torch.inference_mode(), trainer._autocast():
                torch.manual_seed(self.seed)
                for batch in self.loader:
                    x = to_unit(batch[0].to(trainer.device))
                    value = float(objective(model, x))
                    total += value * len(x)
                    n += len(x)
                    for k, v in objective.terms.items():
                        sums[k] = sums.get(k, 0.0) + v * len(x)
        finally:
            model.train(was[0]), objective.train(was[1])
        if n == 0:
            raise ValueError("validation loader yielded no images")
        metrics["val_loss"] = total / n
        metrics.update({f"val_loss_{k}": v / n for k, v in sums.items()})
        metrics["val_loss_seconds"] = time.perf_counter() - start


class ProbeCallback(Callback):
    """Per epoch: the shallow classifier of the paper (3 fully connected layers, ReLU) and a linear
    probe fitted on the training representations the Trainer just computed, scored on the
    validation ones -> ``val_macro_f1`` and ``val_linear_macro_f1``. Labels used only here."""

    def __init__(self, seed: int = 0, hidden: int = 256):
        self.seed, self.hidden = int(seed), int(hidden)

    def on_epoch_end(self, trainer, epoch, metrics):
        if trainer.last_val_embeddings is None:
            return
        start = time.perf_counter()
        x_tr, y_tr = trainer.train_embeddings()
        x_va, y_va = trainer.last_val_embeddings
        if len(np.unique(y_tr)) < 2:  # nothing to classify (a one-class pool): no probe score
            metrics["val_macro_f1"] = metrics["val_linear_macro_f1"] = float("nan")
            return
        metrics["val_macro_f1"] = probe_macro_f1(x_tr, y_tr, x_va, y_va, kind="mlp", seed=self.seed, hidden=self.hidden)
        metrics["val_linear_macro_f1"] = probe_macro_f1(x_tr, y_tr, x_va, y_va, kind="linear", seed=self.seed)
        metrics["probe_seconds"] = time.perf_counter() - start


def representations(model: nn.Module, suppression: Suppression, loader: Iterable, device: torch.device,
                    reconstruct: bool = False) -> dict[str, np.ndarray]:
    """Representations (and labels) of a whole loader. ``reconstruct`` also returns the evaluation
    views (``image``), the reconstructions (``recon``) and ``mask``: the loader's masks when it
    yields ``(img, mask, y)``, else all ones (the whole patch)."""
    model.eval()
    reps, labels, views, recons, masks = [], [], [], [], []
    with torch.inference_mode():
        for batch in loader:
            x = suppression.eval_view(to_unit(batch[0].to(device)))
            out = model(to_normalized(x))
            reps.append(out.mu.float().cpu())
            labels.append(batch[-1].cpu())
            if reconstruct:
                views.append(x.cpu())
                recons.append(out.recon.float().cpu())
                if len(batch) == 3:
                    masks.append(suppression.eval_view(batch[1].to(device).float()).cpu())
                else:
                    masks.append(torch.ones_like(x[:, :1]).cpu())
    out = {"representation": torch.cat(reps).numpy(), "label": torch.cat(labels).numpy().astype(np.int64)}
    if reconstruct:
        out.update(image=torch.cat(views).numpy(), recon=torch.cat(recons).numpy(), mask=torch.cat(masks).numpy())
    return out
