"""The ``autoencoder`` family (paper ``002``): unsupervised cell representations from a VAE-256 or
RAE-1024 trained with a surrounding-cell suppression method; labels only evaluate.

```bash
zoo train autoencoder --method mask_sampled --radius 50 --radius_std 20 --epochs 10
mlflow run . -e autoencoder -P method=noise -P sigma=100 --env-manager local
```

One fold: the autoencoder trains on the fold's training images (every image, labels ignored;
shuffled, no class sampler) with the method's loss; early stopping watches the label-free
``val_loss`` (the same objective on the validation images, fixed draws). Each epoch the paper's
shallow classifier (3 fully connected layers, ReLU) and a linear probe are fitted on the frozen
training representations and scored on the validation ones (``val_macro_f1``,
``val_linear_macro_f1``). After training, at the best epoch: ``test_macro_f1`` (probe fitted on
the training representations, scored on the test cells), ``test_cv_macro_f1`` (the paper's
protocol: 5-fold CV of the shallow classifier on the unseen test cells), linear variants,
``test_loss``, ``test_l1`` / ``test_ssim`` of the reconstructed patch, and ``test_contour_l1`` /
``test_contour_ssim`` inside the real cell contour when the dataset has masks (synthetic masks; Zheng's expert masks). Reconstruction panels (Fig. 1)
go to ``plots/reconstructions.png``.

Primary metric: ``macro_f1`` of the shallow probe (maximize). The reconstruction loss is not
comparable across methods — a loss mask of radius 50 keeps ~2 % of the pixel weight, a crop
reconstructs fewer pixels, noise makes the target unpredictable — so it cannot rank
configurations or gate a promotion; the paper's question is how *descriptive* the
representation is, which the probe measures. It stays label-free where labels would leak into
training: the epoch is chosen on ``val_loss``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

from zoo.families import FAMILIES
from zoo.families.base import Family, FoldContext, FoldOutcome
from zoo.families.params import Param

METHODS = ("none", "noise", "mask_fixed", "mask_sampled", "mask_learned", "crop")
ARCHS = ("vae256", "rae1024")
LATENT = {"vae256": 256, "rae1024": 1024}
PANEL_IMAGES = 6


def _method_params(p: dict[str, Any], latent: int) -> dict[str, Any]:
    """The suppression method's keyword arguments from the family's parameters."""
    m = p["method"]
    if m == "noise":
        return {"sigma": p["sigma"]}
    if m == "mask_fixed":
        return {"radius": p["radius"]}
    if m == "mask_sampled":
        return {"radius": p["radius"], "radius_std": p["radius_std"]}
    if m == "mask_learned":
        return {"latent_dim": latent, "radius_penalty": p["radius_penalty"], "radius_min": p["radius_min"]}
    if m == "crop":
        return {"crop_size": p["crop_size"], "offset_std": p["offset_std"]}
    return {}


@FAMILIES.register("autoencoder")
class AutoencoderFamily(Family):
    name = "autoencoder"
    kind = "autoencoder"
    primary_metric = "macro_f1"
    direction = "maximize"
    has_classes = False
    contract_params: ClassVar[dict[str, str]] = {"probe_hidden": "32"}
    takes_budget: ClassVar[bool] = True  # fit_fold passes self.time_budget() to the Trainer
    params = (
        Param("method", str, "mask_sampled", "surrounding-cell suppression", choices=METHODS),
        Param("arch", str, "vae256", "VAE with a 256-d Gaussian latent, or the RAE-1024 baseline", choices=ARCHS),
        Param("beta", float, 1.0, "weight of the KL term (1 = the ELBO's balance, per pixel)", low=0.0),
        Param("radius", float, 50.0, "r_fix (mask_fixed) or mu_r (mask_sampled) in px of a 256 px patch "
                                     "(scaled to img_size); paper: 50, 90, 126", low=1.0, high=256.0),
        Param("radius_std", float, 20.0, "sigma_r of the sampled radius (px of a 256 px patch)", low=0.0,
              when={"method": "mask_sampled"}),
        Param("radius_penalty", float, 0.0, "weight of the hinge penalty on learned radii below radius_min "
                                            "(0 = none)", low=0.0, when={"method": "mask_learned"}),
        Param("radius_min", float, 50.0, "learned radii below this (px of a 256 px patch) are penalised",
              low=1.0, when={"method": "mask_learned"}),
        Param("sigma", float, 100.0, "noise sigma at the border, 0-255 units; paper: 50, 100, 200", low=0.0,
              when={"method": "noise"}),
        Param("crop_size", float, 172.0, "crop side in px of a 256 px patch; paper: 88 (small), 172 (medium)",
              low=8.0, high=256.0, when={"method": "crop"}),
        Param("offset_std", float, 5.0, "sigma of the folded-Gaussian crop offset (px of a 256 px patch); "
                                        "paper: 0, 5, 15", low=0.0, when={"method": "crop"}),
        Param("mask_norm", str, "mean", "aggregate masked pixel losses by the mean (Eq. 3) or divide by the "
                                        "mean weight", choices=("mean", "weights")),
        Param("probe_hidden", int, 256, "width of the shallow classifier's two hidden layers", low=2),
    )

    # -- what the family is ----------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """The method's own settings (the parameters its ``when`` selects)."""
        kw = _method_params(self.params, LATENT[self.params["arch"]])
        kw.pop("latent_dim", None)
        return kw

    def tags(self) -> dict[str, str]:
        return {"method": self.params["method"], "arch": self.params["arch"],
                **{k: f"{v:g}" for k, v in self.settings().items()}}

    def name_parts(self) -> list[str]:
        return [self.params["arch"], self.params["method"], *(f"{k}{v:g}" for k, v in self.settings().items())]

    def output_columns(self, classes: Sequence[str]) -> list[str]:
        from zoo.models.autoencoder_model import representation_columns

        return representation_columns(LATENT[self.params["arch"]])

    def search_space(self, trial) -> dict[str, Any]:
        decl = {p.name: p for p in self.declarations()}
        method = decl["method"].suggest(trial)
        raw: dict[str, Any] = {"method": method, "beta": decl["beta"].suggest(trial, low=0.05, high=5.0)}
        if method in ("mask_fixed", "mask_sampled"):
            raw["radius"] = decl["radius"].suggest(trial, low=30.0, high=128.0)
        if method == "mask_sampled":
            raw["radius_std"] = decl["radius_std"].suggest(trial, low=0.0, high=40.0)
        if method == "mask_learned":
            raw["radius_penalty"] = decl["radius_penalty"].suggest(trial, choices=[0.0, 1.0])
        if method == "noise":
            raw["sigma"] = decl["sigma"].suggest(trial, choices=[50.0, 100.0, 200.0])
        if method == "crop":
            raw["crop_size"] = decl["crop_size"].suggest(trial, choices=[88.0, 172.0])
            raw["offset_std"] = decl["offset_std"].suggest(trial, low=0.0, high=15.0)
        from zoo.families.params import COMMON_PARAMS

        lr = next(p for p in COMMON_PARAMS if p.name == "lr")
        raw["lr"] = lr.suggest(trial, low=1e-4, high=1e-2)
        return raw

    # -- one fold ----------------------------------------------------------------------------------
    def build(self, img_size: int):
        """(autoencoder, objective) for images of ``img_size`` px."""
        from zoo.autoencoder import create_suppression
        from zoo.autoencoder.training import AutoencoderObjective
        from zoo.losses.reconstruction import ReconstructionLoss
        from zoo.models.autoencoder import create_autoencoder

        p = self.params
        sup = create_suppression(p["method"], img_size, **_method_params(p, LATENT[p["arch"]]))
        model = create_autoencoder(p["arch"], img_size=sup.input_size, backbone=self.cfg.backbone,
                                   pretrained=self.cfg.pretrained)
        return model, AutoencoderObjective(sup, ReconstructionLoss(p["beta"], p["mask_norm"]))

    def fit_fold(self, ctx: FoldContext) -> FoldOutcome:
        import numpy as np

        from zoo.autoencoder.probe import cv_macro_f1, probe_macro_f1
        from zoo.autoencoder.training import AutoencoderTrainer, ProbeCallback, ValidationLoss, representations
        from zoo.families.embedding import plot_history, train_eval_loader
        from zoo.models.autoencoder_model import AutoencoderModel
        from zoo.train import seed_everything

        cfg, p = self.cfg, self.params
        loaders = ctx.loaders(sampler=None)  # every training image, shuffled: labels are not used
        seed_everything(cfg.seed)
        model, objective = self.build(cfg.img_size)
        sup = objective.suppression
        trainer = AutoencoderTrainer(
            model, objective, loaders["train"], loaders["val"], epochs=cfg.epochs, patience=cfg.patience,
            lr=cfg.lr, device=cfg.device, svm=False, monitor="val_loss", mode="min",
            validators=[ValidationLoss(loaders["val"], seed=cfg.seed), ProbeCallback(cfg.seed, p["probe_hidden"])],
            callbacks=list(ctx.callbacks), precision=cfg.precision, val_every=cfg.val_every,
            budget=self.time_budget(),
            checkpoint_dir=ctx.checkpoint_dir, resume=cfg.resume, train_eval_loader=train_eval_loader(loaders["train"]),
            seed=cfg.seed, progress=ctx.progress, logger=ctx.run, extra={"run_id": ctx.run.run_id},
        )
        fit = trainer.fit()  # best weights (lowest val_loss) loaded
        ctx.run.set_tags({"precision": fit.precision, "stopped_on_budget": str(fit.stopped_on_budget).lower()})
        metrics: dict[str, float] = {k: v for k, v in fit.best.items() if k.startswith("val_")}
        metrics["best_epoch"] = float(fit.best_epoch or 0)
        device = trainer.device
        train = representations(model, sup, trainer.train_eval_loader, device)
        summary: dict[str, Any] = {"best_epoch": fit.best_epoch, "history": fit.history, "method": sup.describe()}
        test_index: list[str] = []
        title = " ".join([cfg.family, *self.name_parts(), cfg.dataset, f"fold {ctx.fold}"])
        panel_source = loaders["val"]
        if "test" in loaders and len(ctx.split["test"]) and len(np.unique(train["label"])) >= 2:
            test_loader, has_masks = self._test_loader(ctx, loaders["test"])
            test = representations(model, sup, test_loader, device, reconstruct=True)
            x_tr, y_tr, x_te, y_te = train["representation"], train["label"], test["representation"], test["label"]
            metrics["test_macro_f1"] = probe_macro_f1(x_tr, y_tr, x_te, y_te, "mlp", cfg.seed, p["probe_hidden"])
            metrics["test_linear_macro_f1"] = probe_macro_f1(x_tr, y_tr, x_te, y_te, "linear", cfg.seed)
            if len(np.unique(y_te)) >= 2:
                cv = cv_macro_f1(x_te, y_te, "mlp", 5, cfg.seed, p["probe_hidden"])
                cv_lin = cv_macro_f1(x_te, y_te, "linear", 5, cfg.seed)
                metrics.update(test_cv_macro_f1=cv["mean"], test_cv_macro_f1_std=cv["std"],
                               test_cv_linear_macro_f1=cv_lin["mean"])
            metrics["test_loss"] = _objective_mean(trainer, loaders["test"], cfg.seed)
            from zoo.autoencoder.metrics import summarize_contour

            whole = summarize_contour(test["image"], test["recon"], np.ones_like(test["mask"]))
            metrics.update(test_l1=whole["contour_l1"], test_ssim=whole["contour_ssim"])
            if has_masks:
                contour = summarize_contour(test["image"], test["recon"], test["mask"])
                metrics.update({f"test_{k}": v for k, v in contour.items()})
            test_index = ctx.split["test"]["image"].astype(str).tolist()
            panel_source = loaders["test"]
        ctx.run.log_metrics_json({**summary, "metrics": metrics})
        ctx.run.log_figure(plot_history(fit.history), "plots/history.png")
        from zoo.autoencoder.panels import reconstruction_panel
        from zoo.autoencoder.training import to_unit

        batch = next(iter(panel_source))[0][:PANEL_IMAGES]
        ctx.run.log_figure(reconstruction_panel(model, sup, to_unit(batch), title=title, seed=cfg.seed),
                           "plots/reconstructions.png")

        zoo_model = None
        if ctx.options.get("log_model", True):
            view = {"crop_px": sup.input_size} if sup.input_size != cfg.img_size else {}
            zoo_model = AutoencoderModel(cfg.family, model.cpu(), img_size=cfg.img_size, view=view,
                                         config={**cfg.to_dict(), **p, "fold": ctx.fold},
                                         training=ctx.options.get("training"), device="cpu")
        return FoldOutcome(zoo_model, metrics, fit.best_epoch, fit.epochs_run, list(fit.history), test_index)

    def _test_loader(self, ctx: FoldContext, plain):
        """The test split with masks when the dataset has them (contour metrics), else ``plain``."""
        df = ctx.split["test"]
        if "mask" not in df.columns or not df["mask"].notna().any():
            return plain, False
        from torch.utils.data import DataLoader

        from zoo.data.datasets import CellDataset

        ds = ctx.dataset
        data = CellDataset(df, ds.root, ds.classes, self.cfg.img_size, train=False, return_mask=True,
                           prepared_dir=ds.path)
        return DataLoader(data, batch_size=self.cfg.batch_size, shuffle=False), True


def _objective_mean(trainer, loader, seed: int) -> float:
    """The training objective on ``loader`` (eval mode, fixed draws), as ``ValidationLoss`` does."""
    from zoo.autoencoder.training import ValidationLoss

    row: dict[str, float] = {}
    ValidationLoss(loader, seed=seed).on_epoch_end(trainer, trainer.epoch, row)
    return row["val_loss"]
