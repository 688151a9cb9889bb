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


def test_augment_picks_the_papers_geometry_or_the_zoos_batched_one():
    from zoo.data.batch_augment import BatchAugment, supports
    from zoo.data.transforms import AUGMENT_DEFAULTS
    from zoo.families.runner import build_family

    paper = build_family("classifier", {"augment": "paper"})
    aug = paper.augment()
    assert aug["translate"] == 0.25 and aug["shear"] == pytest.approx(11.31, abs=0.01)  # shear factor 0.2
    assert aug["brightness"] == 0.0 and aug["stain"] is not None     # the paper's colour: stain only
    assert not supports(aug)                                         # stain runs per image
    zoo = build_family("classifier", {"augment": "zoo", "stain_aug": "false"})
    assert zoo.augment() == {} and supports(zoo.augment())           # the zoo's defaults, one warp per batch
    warp = BatchAugment(**zoo.augment())
    assert warp.translate == AUGMENT_DEFAULTS["translate"] and warp.brightness == AUGMENT_DEFAULTS["brightness"]
    assert zoo.tags()["augment"] == "zoo"
    with_stain = build_family("classifier", {"augment": "zoo", "stain_aug": "true"}).augment()
    assert set(with_stain) == {"stain"} and not supports(with_stain)
    # stain_aug=auto follows the augmentation: the paper's colour augmentation is the stain, the zoo's is jitter
    assert paper.stain and "stain" in paper.augment() and paper.tags()["stain_aug"] == "true"
    assert not build_family("classifier", {"augment": "zoo"}).stain
    assert "stain" not in build_family("classifier", {"augment": "paper", "stain_aug": "false"}).augment()
    # auto: per preset (the cpu preset's choice was measured: reports/classifier_augment_selection.md)
    cpu, paper_preset = build_family("classifier", {}), build_family("classifier", {"preset": "paper"})
    assert (cpu.augmentation, cpu.stain, cpu.name_parts()) == ("zoo", False, ["resnet18"])
    assert (paper_preset.augmentation, paper_preset.stain) == ("paper", True)
    assert paper_preset.name_parts() == ["resnext50_32x4d", "stain"]
    with pytest.raises(ValueError, match="augment.*auto, paper, zoo"):
        build_family("classifier", {"augment": "mild"})


def test_declarations_output_columns_and_search_space():
    import optuna

    from zoo.families.runner import build_family

    fam = build_family("classifier", {"stain_aug": "false", "augment": "paper"})
    assert fam.kind == "classifier" and fam.primary_metric == "macro_f1" and fam.direction == "maximize"
    assert fam.output_columns(CLASSES) == ["label", "confidence", *(f"p_{c}" for c in CLASSES), "lineage",
                                           "maturity"]
    assert "stain" not in fam.augment() and fam.augment()["translate"] == 0.25
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    spaces = []
    for _ in range(12):
        trial = study.ask()
        spaces.append(fam.search_space(trial))
        assert trial.distributions["lr"].log                      # learning rate on a log scale
    for space in spaces:
        assert 1e-5 <= space["lr"] <= 1e-2 and 0.0 <= space["label_smoothing"] <= 0.2
        # the stain's strength is searched only where the stain is on
        assert ("stain_strength" in space) == space["stain_aug"]
        assert space.get("stain_strength", 0.0) <= 0.2
    assert {s["stain_aug"] for s in spaces} == {False, True}
