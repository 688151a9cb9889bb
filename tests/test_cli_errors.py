"""The CLI tells the truth in one line, fast (issue 15): `zoo --help` imports no room; MLflow's
errors (a missing alias) are restated in one line naming the model; a no-op promotion says so; a
rollback names the missing alias; outside a project the CLI refuses to create a store silently;
compare-guides defaults agree with the MLproject and `--help` shows them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from test_tracking_registry import aliases, empty_db, snapshot, store, train  # noqa: F401  (fixtures)
from zoo.cli import COMMANDS, build_parser, main

REPO = Path(__file__).resolve().parents[1]


def _run_python(code: str, cwd: Path, **env) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("ZOO_HOME", "MLFLOW_TRACKING_URI")}
    full.update(env, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=300)


def test_lazy_command_table_names_exactly_the_commands_the_rooms_define():
    import argparse
    import importlib

    defined: dict[str, str] = {}
    for module in dict.fromkeys(m for m, _ in COMMANDS.values()):
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).add_commands(sub)
        defined.update({command: module for command in sub.choices})
    assert defined == {command: module for command, (module, _) in COMMANDS.items()}
    assert set(next(a for a in build_parser()._actions if a.dest == "command").choices) == set(COMMANDS)


def test_zoo_help_imports_no_room_and_reads_as_sentences(tmp_path):
    code = ("import sys\nfrom zoo.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in ('torch', 'mlflow', 'pandas', 'sklearn', 'zoo.guides') if m in sys.modules)\n"
            "print('HEAVY', heavy)\n")
    proc = _run_python(code, REPO)
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr
    assert "through an" not in proc.stdout
    for command in COMMANDS:
        assert command in proc.stdout


def test_models_list_does_not_import_torch(store):
    code = ("import sys\nfrom zoo.cli import main\nassert main(['models', 'list']) == 0\n"
            "print('TORCH', 'torch' in sys.modules)\n")
    proc = _run_python(code, store, ZOO_HOME=str(store), MLFLOW_TRACKING_URI=os.environ["MLFLOW_TRACKING_URI"])
    assert "TORCH False" in proc.stdout, proc.stdout + proc.stderr


def test_predict_with_a_missing_alias_is_one_line_naming_model_and_alias(store, tmp_path, capsys):
    train(0.8, 0.5)
    image = tmp_path / "cell.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(image)
    capsys.readouterr()  # registering printed MLflow's own lines
    assert main(["predict", "zoo-tml@nosuchalias", str(image)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("zoo: error") and "zoo-tml@nosuchalias" in err and "Traceback" not in err


def test_repromoting_the_holder_says_nothing_changed(store, capsys):
    v1 = train(0.8, 0.5)
    assert main(["models", "promote", "zoo-tml", str(v1.version)]) == 0
    before = snapshot()
    capsys.readouterr()
    assert main(["models", "promote", "zoo-tml", str(v1.version)]) == 0
    assert capsys.readouterr().out.strip() == "zoo-tml v1 is already @production, nothing changed"
    assert snapshot() == before


def test_rollback_names_what_is_missing(store, capsys):
    train(0.8, 0.5)
    assert main(["models", "rollback", "zoo-tml"]) == 2
    err = capsys.readouterr().err
    assert "no @production and @previous version" in err and "nothing to roll back" in err
    v2 = train(0.9, 0.4)
    main(["models", "promote", "zoo-tml", str(v2.version)])
    capsys.readouterr()
    assert main(["models", "rollback", "zoo-tml"]) == 2
    err = capsys.readouterr().err
    assert "no @previous version" in err and "@production" not in err.split("version")[0]


def test_outside_a_project_the_cli_names_the_store_and_creates_nothing(tmp_path):
    proc = _run_python("import sys\nfrom zoo.cli import main\nsys.exit(main(['models', 'list']))", tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no zoo project here" in proc.stderr and str(tmp_path / "mlflow.db") in proc.stderr
    assert "ZOO_HOME" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()


def test_compare_guides_defaults_agree_with_the_mlproject_and_help_shows_them(capsys):
    from zoo.families.cli import COMPARE_DEFAULTS

    entry = yaml.safe_load((REPO / "MLproject").read_text())["entry_points"]["compare_guides"]["parameters"]
    parser = build_parser(["compare-guides"])
    with pytest.raises(SystemExit):
        parser.parse_args(["compare-guides", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for name, spec in entry.items():
        default = str(spec.get("default"))
        if name in ("dataset", "guides"):
            assert f"(default: {default})" in help_text, name
            continue
        assert COMPARE_DEFAULTS.get(name) == default, f"--{name}: CLI {COMPARE_DEFAULTS.get(name)!r} vs MLproject {default!r}"
        assert f"--{name}" in help_text and f"(default: {default})" in help_text, name


def test_train_family_help_through_the_lazy_cli_lists_every_parameter(capsys):
    from zoo.families import FAMILIES
    from zoo.families.params import COMMON_PARAMS

    assert main(["train", "guided", "--help"]) == 0
    out = capsys.readouterr().out
    for p in (*COMMON_PARAMS, *FAMILIES.get("guided").declarations()):
        assert f"--{p.name} " in out and "(default: " in out, p.name
    assert main(["train", "guided", "--epochs", "ten"]) == 2
    assert "e.g. --epochs 10" in capsys.readouterr().err  # the syntax of the command typed
