"""Checks that stop a study before any training, the pruning callback, and the CLI wiring."""

from __future__ import annotations

import optuna
import pytest

from zoo.tune.objective import PruningCallback
from zoo.tune.study import TuneRequest, make_pruner, plan, run_study


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty project home. The synthetic default is stood in for by its fold count (building it
    takes minutes on a busy CPU and these checks only need to know it exists); any other dataset
    name goes to the real loader, which refuses unknown names."""
    import zoo.families.runner as runner

    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    real = runner.load_dataset
    monkeypatch.setattr(runner, "load_dataset", lambda name: SYNTH if name == "synth" else real(name))
    return tmp_path


class SYNTH:
    name, n_folds = "synth", 6


def must_fail(req: TuneRequest, match: str, home) -> None:
    def no_training(*a, **k):
        raise AssertionError("training started despite a bad parameter")

    with pytest.raises((ValueError, KeyError, FileNotFoundError), match=match):
        run_study(req, train=no_training)
    assert not (home / "mlflow.db").exists()  # not even a run was created


@pytest.mark.parametrize("req, match", [
    (TuneRequest(family="tml", trials=0), r"'trials' must be >= 1.*-P trials=20"),
    (TuneRequest(family="tml", trials="many"), r"'trials' needs a whole number"),
    (TuneRequest(family="tmll", trials=2), r"unknown family 'tmll'.*Did you mean 'tml'"),
    (TuneRequest(family="tml", space="marginn: 0.1"), r"unknown parameter\(s\) \['marginn'\].*Searched:.*margin"),
    (TuneRequest(family="tml", space="lr: {low: 0.001, high: 0.01}\nbatch_size: {low: 8, high: 32}"),
     "can only be fixed"),
    (TuneRequest(family="tml", storage="redis://localhost:6379"), r"journal:<path>.*postgresql://"),
    (TuneRequest(family="tml", objectives="primary,mcs", pruner="median"), "pruner=none"),
    (TuneRequest(family="tml", objectives="f1"), "objectives"),
    (TuneRequest(family="tml", params={"fold": "all"}), "one fold per trial"),
    (TuneRequest(family="tml", params={"epochs": "0"}), "epochs"),
    (TuneRequest(family="tml", params={"dataset": "nope"}), "no prepared dataset 'nope'"),
])
def test_bad_parameters_stop_before_training(req, match, home):
    must_fail(req, match, home)


def test_unreachable_storage_stops_before_training(home):
    req = TuneRequest(family="tml", storage="postgresql+psycopg2://zoo:pw@127.0.0.1:9/none")
    must_fail(req, r"cannot open storage .*\*\*\*@127.0.0.1:9.*Fix", home)


def test_plan_probes_the_family_space(home):
    p = plan(TuneRequest(family="guided", space="loss: inverse_umap\nalpha: {low: 0.2, high: 0.5}",
                         params={"epochs": "1"}))
    assert p.study_name == "guided-synth" and p.trials == 20 and not p.multi
    assert p.base_raw["loss"] == "inverse_umap"


def test_pruning_callback_reports_and_prunes():
    study = optuna.create_study(direction="maximize", pruner=make_pruner("median"))
    for value in (0.9, 0.8, 0.85):  # three finished trials set the median per epoch
        t = study.ask()
        for epoch in (1, 2, 3):
            t.report(value, epoch)
        study.tell(t, value)
    trial = study.ask()
    cb = PruningCallback(trial, "val_macro_f1")
    cb.on_epoch_end(None, 1, {"val_macro_f1": 0.1})       # warm-up epoch: reported, never pruned
    cb.on_epoch_end(None, 2, {"train_loss": 0.3})          # no validation this epoch: nothing reported
    with pytest.raises(optuna.TrialPruned, match="epoch 3"):
        cb.on_epoch_end(None, 3, {"val_macro_f1": 0.1})
    assert study.trials[-1].intermediate_values == {1: 0.1, 3: 0.1}
    good = PruningCallback(study.ask(), "val_macro_f1")
    for epoch in (1, 2, 3):
        good.on_epoch_end(None, epoch, {"val_macro_f1": 0.95})  # above the median: never pruned


def test_zoo_tune_is_a_zoo_command():
    from zoo.cli import build_parser

    args = build_parser().parse_args(["tune", "--family", "guided", "--trials", "3", "--epochs", "1",
                                      "--alpha", "0.3"])
    assert args.func.__module__ == "zoo.tune.cli" and args.trials == "3" and args.epochs == "1"
