"""The classifier family (seed 004): its declarations and its Trainer path (softmax validation,
early stopping on validation macro-F, no SVM stage). The family's whole fold (train, save, load
in a fresh process, predict, register, gate) is covered by the generated contract test."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from zoo.knowledge import load_ontology

CLASSES = ["band_neutrophil", "segmented_neutrophil", "lymphocyte"]


def _colour_coded(n_per_class: int, seed: int) -> TensorDataset:
    """16 px images whose class is their mean colour (plus noise): learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[1.5, -1.0, -1.0], [-1.0, 1.5, -1.0], [-1.0, -1.0, 1.5]])
    y = torch.arange(3).repeat_interleave(n_per_class)
    x = centres[y][:, :, None, None] + 0.5 * torch.randn(len(y), 3, 16, 16, generator=g)
    return TensorDataset(x, y)


def test_classifier_trainer_learns_and_validates_on_softmax_predictions():
    from zoo.families.classifier import ClassifierTrainer
    from zoo.models.classifier import create_classifier

    torch.manual_seed(0)
    train = DataLoader(_colour_coded(16, 0), batch_size=12, shuffle=True, generator=torch.Generator().manual_seed(0))
    val = DataLoader(_colour_coded(6, 1), batch_size=32)
    trainer = ClassifierTrainer(create_classifier("sequential_cnn", num_classes=3), nn.CrossEntropyLoss(label_smoothing=0.1),
                                train, val, epochs=6, patience=3, lr=3e-3, device="cpu", svm=False, classes=CLASSES,
                                ontology=load_ontology(), progress=False)
    fit = trainer.fit()
    last = fit.history[-1]
    assert fit.monitor == "val_macro_f1"
    assert fit.best_metric == pytest.approx(1.0)                   # separable by colour
    assert {"val_macro_f1", "val_macro_f1_tolerant", "val_loss"} <= set(last)
    assert not any(k.startswith("svm_") for k in last)             # no SVM stage ran
    assert fit.history[0]["val_loss"] > min(h["val_loss"] for h in fit.history)


def test_arch_follows_the_preset_and_unknown_names_list_the_valid_ones():
    from zoo.families import FAMILIES
    from zoo.families.runner import build_family

    assert "classifier" in FAMILIES
    assert build_family("classifier", {}).arch == "resnet18"
    assert build_family("classifier", {"preset": "paper"}).arch == "resnext50_32x4d"
    assert build_family("classifier", {"arch": "sequential_cnn"}).tags()["arch"] == "sequential_cnn"
    fam = build_family("classifier", {"arch": "resnxt50"})
    with pytest.raises(ValueError, match="sequential_cnn"):
        fam.arch
    with pytest.raises(ValueError, match="label_smoothing"):
        build_family("classifier", {"label_smoothing": "lots"})


def test_declarations_output_columns_and_search_space():
    import optuna

    from zoo.families.runner import build_family

    fam = build_family("classifier", {"stain_aug": "false"})
    assert fam.kind == "classifier" and fam.primary_metric == "macro_f1" and fam.direction == "maximize"
    assert "stain_strength" not in fam.params                      # only applies with stain_aug
    assert fam.output_columns(CLASSES) == ["label", "confidence", *(f"p_{c}" for c in CLASSES), "lineage",
                                           "maturity"]
    assert "stain" not in fam.augment() and fam.augment()["translate"] == 0.25
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    space = fam.search_space(trial)
    assert 1e-5 <= space["lr"] <= 1e-2 and 0.0 <= space["label_smoothing"] <= 0.2
    assert space["stain_aug"] is True and 0.0 <= space["stain_strength"] <= 0.2
    assert trial.distributions["lr"].log                          # learning rate on a log scale
