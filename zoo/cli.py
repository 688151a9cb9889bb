"""The ``zoo`` command line. Each room of the library contributes its own sub-commands through an
``add_commands(subparsers)`` function, so this file only wires them together.

Start-up is lazy: ``zoo --help`` lists the commands from :data:`COMMANDS` without importing any
room, and ``zoo <command>`` imports only the room that defines ``<command>`` (the rooms pull in
torch, scikit-learn and MLflow, which take seconds to import). ``tests/test_cli_errors.py`` checks
that this table names exactly the commands the rooms define."""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module defining it through add_commands(subparsers), one-line help for `zoo --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("zoo.data.cli", "prepare and inspect datasets (synth | ingest | prepare | show)"),
    "train": ("zoo.families.cli", "train a model family (`zoo train <family> --help` lists its parameters)"),
    "compare-guides": ("zoo.families.cli", "paper 000's experiment: every guide x loss + TML over CV folds"),
    "models": ("zoo.tracking.cli", "registered models: list, promote, rollback"),
    "evaluate": ("zoo.tracking.cli", "evaluate a registered model on a prepared dataset"),
    "predict": ("zoo.tracking.cli", "classify image files with a model"),
    "ui": ("zoo.tracking.cli", "start `mlflow ui` on the zoo's store (or print the command)"),
    "guides": ("zoo.guides.cli", "list or show the embedding guides"),
    "smr-grid": ("zoo.families.smr_grid", "paper 001's experiment: every curve x targets x SMR loss + TML"),
    "tune": ("zoo.tune.cli", "Optuna study over a family's search space, nested in MLflow"),
    "autoencoder": ("zoo.autoencoder.cli", "autoencoder family tools: the paper's grid, backbone reuse"),
}
DESCRIPTION = ("marrow-zoo: train, register, evaluate and serve hematology cell-image models "
               "(`zoo <command> --help` for each command).")
_COMMAND_MODULES = tuple(dict.fromkeys(module for module, _ in COMMANDS.values()))


def _chosen_command(argv: list[str]) -> str | None:
    """The command word of ``argv`` (the first non-option argument), if it names a command."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The full parser (every room imported); with ``argv``, only the room of its command is
    imported and the other commands are listed from :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="zoo", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    if argv is None:
        modules = _COMMAND_MODULES
    else:
        chosen = _chosen_command(argv)
        modules = (COMMANDS[chosen][0],) if chosen else ()
    for name in modules:
        importlib.import_module(name).add_commands(sub)
    for command, (_, help_text) in COMMANDS.items():
        if command not in sub.choices:  # listed for --help; never run (its room was not imported)
            sub.add_parser(command, help=help_text)
    return parser


def _restate_mlflow_error(exc: Exception) -> str:
    """One line for an ``MlflowException``: the first line of MLflow's message (``main`` puts the
    model URI the user typed in front, since MLflow's wording often names only the alias)."""
    message = str(getattr(exc, "message", exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return message


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):  # pragma: no cover - every room sets func on its parsers
        parser.error(f"command {args.command!r} is not available")
    try:
        result = args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as exc:  # user errors: one clear line, no trace
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # MLflow's errors (missing alias/version, unreachable store) are user errors too; the class
        # is looked up here, not imported, so `zoo --help` never imports mlflow.
        mlflow_exc = getattr(sys.modules.get("mlflow.exceptions"), "MlflowException", None)
        if mlflow_exc is None or not isinstance(exc, mlflow_exc):
            raise
        where = f" ({args.model})" if getattr(args, "model", None) else ""
        print(f"zoo: error{where}: {_restate_mlflow_error(exc)}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
