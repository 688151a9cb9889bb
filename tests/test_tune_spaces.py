"""-P space=<yaml>: narrowing and fixing a family's search space; unknown names refused."""

from __future__ import annotations

import optuna
import pytest

from zoo.tune.spaces import (Choices, Fixed, Range, SpaceTrial, check_names, fixed_values, load_space,
                             probe_space)


def space(trial):
    """A guided-like space: kappa only exists for the inverse-UMAP loss."""
    out = {"alpha": trial.suggest_float("alpha", 0.0, 1.0),
           "loss": trial.suggest_categorical("loss", ["distance", "inverse_umap"]),
           "margin": trial.suggest_float("margin", 0.01, 1.0, log=True)}
    if out["loss"] == "inverse_umap":
        out["kappa"] = trial.suggest_float("kappa", 0.0, 0.9)
    return out


def test_load_space_forms(tmp_path):
    f = tmp_path / "space.yaml"
    f.write_text("alpha: {low: 0.2, high: 0.6}\nloss: inverse_umap\nguide: [fr_sim_mat, kk_sim_mat]\n")
    parsed = load_space(str(f))
    assert isinstance(parsed["alpha"], Range) and (parsed["alpha"].low, parsed["alpha"].high) == (0.2, 0.6)
    assert isinstance(parsed["loss"], Fixed) and parsed["loss"].value == "inverse_umap"
    assert isinstance(parsed["guide"], Choices) and parsed["guide"].choices == ("fr_sim_mat", "kk_sim_mat")
    assert load_space("kappa: 0.1")["kappa"].value == 0.1          # inline YAML
    assert load_space(None) == {} and load_space("none") == {}
    with pytest.raises(FileNotFoundError, match="space file"):
        load_space(str(tmp_path / "missing.yaml"))
    with pytest.raises(ValueError, match="low: .., high"):
        load_space("alpha: {low: 0.1}")
    with pytest.raises(ValueError, match="low <= high"):
        load_space("alpha: {low: 0.9, high: 0.1}")


def test_space_trial_narrows_and_fixes():
    overrides = load_space("alpha: {low: 0.2, high: 0.3}\nloss: inverse_umap\nmargin: [0.1, 0.2]\n")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        trial = study.ask()
        proxy = SpaceTrial(trial, overrides)
        out = space(proxy)
        assert 0.2 <= out["alpha"] <= 0.3
        assert out["loss"] == "inverse_umap" and "loss" not in trial.params  # fixed: never sampled
        assert out["margin"] in (0.1, 0.2)
        assert "kappa" in out                                               # its condition now holds
        assert proxy.fixed == {"loss": "inverse_umap"}
        study.tell(trial, out["alpha"])


def test_categorical_subset_must_be_in_the_family_choices():
    trial = optuna.create_study().ask()
    with pytest.raises(ValueError, match="not among the family's choices"):
        space(SpaceTrial(trial, load_space("loss: [distance, cosine]")))
    with pytest.raises(ValueError, match="categorical"):
        space(SpaceTrial(optuna.create_study().ask(), load_space("loss: {low: 0, high: 1}")))


def test_probe_finds_conditional_parameters():
    assert probe_space(space) == {"alpha": "float", "loss": "categorical", "margin": "float", "kappa": "float"}


def test_unknown_names_are_refused_naming_the_valid_ones():
    searched = probe_space(space)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['alhpa'\].*Searched: alpha"):
        check_names(load_space("alhpa: 0.3"), searched, {"alpha", "lr", "guide"}, "guided")
    with pytest.raises(ValueError, match="can only be fixed"):
        check_names(load_space("lr: {low: 0.001, high: 0.1}"), searched, {"lr"}, "guided")
    check_names(load_space("lr: 0.001\nsvm_C: {low: 1, high: 10}\nkappa: 0.1"), searched, {"lr"}, "guided")
    assert fixed_values(load_space("lr: 0.001\nsvm_C: 3\nalpha: {low: 0, high: 1}")) == {"lr": 0.001}
