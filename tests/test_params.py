"""Entry-point parameter parsing: typed values, presets, and errors that name the bad input."""

import pytest
import yaml

from zoo.families.params import PRESETS, parse_bool, parse_fold, parse_int, resolve_config
from zoo.paths import project_dir


def test_auto_takes_preset_values():
    cfg = resolve_config("tml", {"epochs": "auto", "preset": "paper"})
    assert cfg.epochs == PRESETS["paper"]["epochs"]
    assert cfg.backbone == "densenet121" and cfg.img_size == 224 and cfg.patience == 50
    cpu = resolve_config("tml", {})
    assert cpu.backbone == "resnet18" and cpu.img_size == 64 and cpu.preset == "cpu"


def test_strings_are_parsed():
    cfg = resolve_config("tml", {"epochs": "3", "fold": "all", "limit": "200", "register": "false",
                                 "lr": "0.01", "pretrained": "none", "img_size": "32.0"})
    assert (cfg.epochs, cfg.fold, cfg.limit, cfg.register, cfg.lr) == (3, "all", 200, False, 0.01)
    assert resolve_config("tml", {"fold": "final"}).fold == "final"
    assert cfg.pretrained is None and cfg.img_size == 32


@pytest.mark.parametrize("key,value,needle", [
    ("epochs", "ten", "whole number"),
    ("epochs", "0", ">= 1"),
    ("img_size", "3.5", "whole number"),
    ("fold", "-1", "fold number"),
    ("register", "maybe", "true or false"),
    ("preset", "gpu", "one of cpu, paper"),
    ("lr", "-1", "lr"),
])
def test_bad_values_name_the_parameter(key, value, needle):
    with pytest.raises(ValueError) as err:
        resolve_config("tml", {key: value})
    assert key in str(err.value) and needle in str(err.value)


def test_budget_last_epoch_is_a_share_of_an_epoch_and_needs_a_budget():
    assert resolve_config("tml", {}).budget_last_epoch is None  # both presets: stop before the epoch
    assert resolve_config("tml", {"preset": "paper"}).budget_last_epoch is None
    cfg = resolve_config("tml", {"budget": "12", "budget_last_epoch": "0.2"})
    assert (cfg.budget, cfg.budget_last_epoch) == (12.0, 0.2)
    assert resolve_config("tml", {"budget": "12", "budget_last_epoch": "none"}).budget_last_epoch is None
    with pytest.raises(ValueError, match=r"'budget_last_epoch' must lie in \[0.0, 1.0\], got 1.5"):
        resolve_config("tml", {"budget": "12", "budget_last_epoch": "1.5"})
    with pytest.raises(ValueError, match=r"'budget_last_epoch' \(0.2\).*no budget is set.*-P budget=12"):
        resolve_config("tml", {"budget_last_epoch": "0.2"})


def test_budget_schedule_is_minutes_or_epochs_and_needs_a_budget():
    assert resolve_config("tml", {}).budget_schedule == "minutes"  # both presets: the budget's minutes
    assert resolve_config("tml", {"preset": "paper"}).budget_schedule == "minutes"
    assert resolve_config("tml", {"budget": "12", "budget_schedule": "epochs"}).budget_schedule == "epochs"
    with pytest.raises(ValueError, match=r"'budget_schedule' must be one of minutes, epochs; got 'steps'"):
        resolve_config("tml", {"budget": "12", "budget_schedule": "steps"})
    with pytest.raises(ValueError, match=r"'budget_schedule' \(epochs\).*no budget is set.*-P budget=12"):
        resolve_config("tml", {"budget_schedule": "epochs"})
    resolve_config("tml", {"budget_schedule": "minutes"})  # what no budget does anyway: fine


def test_a_family_that_trains_without_a_budget_refuses_one():
    """The reference family has no epoch loop over images (features once, then a reducer and a SOM):
    it must not look time-boxed and run unbounded. Every family with a Trainer takes a budget."""
    from zoo.families import FAMILIES

    cls = FAMILIES.get("reference")
    assert not cls.takes_budget
    with pytest.raises(ValueError, match=r"family 'reference' does not train under a wall-clock budget.*"
                                         r"do: autoencoder, classifier, guided, smr, tml.*-P budget=5"):
        cls(resolve_config("reference", {"budget": "5"}, cls.param_names()))
    cls(resolve_config("reference", {}, cls.param_names()))  # no budget: fine
    for name in ("tml", "guided", "smr", "classifier", "autoencoder"):
        fam = FAMILIES.get(name)
        assert fam.takes_budget
        budget = fam(resolve_config(name, {"budget": "5", "budget_schedule": "epochs"}, fam.param_names())).time_budget()
        assert (budget.seconds, budget.schedule) == (300.0, "epochs")


def test_unknown_parameter_is_rejected_with_the_known_list():
    with pytest.raises(ValueError, match="unknown parameter.*'epoch'.*known parameters: .*epochs"):
        resolve_config("tml", {"epoch": "3"})


def test_family_parameters_pass_through():
    cfg = resolve_config("guided", {"guide": "kk_sim"}, family_param_names=("guide",))
    assert cfg.family_params == {"guide": "kk_sim"}


def test_scalar_parsers():
    assert parse_int("n", "7") == 7 and parse_int("n", "none", allow_none=True) is None
    assert parse_bool("b", "Yes") is True and parse_bool("b", "0") is False
    assert parse_fold("ALL") == "all" and parse_fold("2") == 2 and parse_fold("final") == "final"


def test_mlproject_common_parameters_are_shared_by_training_entry_points():
    spec = yaml.safe_load((project_dir() / "MLproject").read_text())
    common = set(spec["common_parameters"])
    for family in ("tml", "guided"):
        entry = spec["entry_points"][family]
        assert common <= set(entry["parameters"]), family
        for name in entry["parameters"]:  # every declared parameter reaches the command
            assert "{" + name + "}" in entry["command"], (family, name)


def test_conda_env_pins_match_pyproject():
    import tomllib

    root = project_dir()
    py = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    conda = yaml.safe_load((root / "conda.yaml").read_text())
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    declared = set(py["dependencies"]) | set(py["optional-dependencies"]["explain"])
    assert set(pip) == declared


@pytest.mark.parametrize("batch,classes,expected", [(64, 15, 8), (64, 4, 16), (32, 15, 4), (30, 15, 2), (8, 1, 8)])
def test_m_per_class_fills_the_batch(batch, classes, expected):
    from zoo.families.runner import m_per_class

    m = m_per_class(batch, classes)
    assert m == expected and batch % m == 0 and m * classes >= batch
