"""Every shell command the README and docs/*.md show, run as a user would, against a throw-away
project (ZOO_HOME + its own SQLite store) holding tiny prepared datasets named as the docs name
them (synth, pbc, zheng) and tiny trained models (zoo-tml, zoo-guided: v1 @production, v2 and v3
candidates, as after a few trainings). A command that breaks — an unknown option, a missing
file such as a class map the docs name, a non-zero exit — fails the test with the document, the
command and its output.

The documents are read at test time (the README is rewritten often), fenced ```bash blocks only.
Lines continued with ``\\`` are joined; ``# comments`` dropped; optional ``[--flag value]`` parts of
a synopsis are run as given (brackets removed). Commands are NOT run when they match SKIP below:
each pattern says why (they train, start servers, need data or services the throw-away project
does not have, or take minutes). The README's Python snippet has its own test (test_e2e.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow

# (regex searched in the command, why it is not run)
SKIP: tuple[tuple[str, str], ...] = (
    (r"\bzoo train\b|\bmlflow run\b|\bzoo (compare-guides|smr-grid|tune)\b|\bzoo autoencoder grid\b",
     "trains models (minutes to hours)"),
    (r"scripts/(quickstart|test)\.sh|\bbenchmarks/", "sets up the environment / runs the suite or a benchmark"),
    (r"\bmlflow ui\b|\bmlflow models serve\b|\bzoo ui\b(?!.*--print)|\bcurl\b|base64 <",
     "starts or needs a long-running server"),
    (r"^dvc\b|&& cp -r|\bdvc\b", "DVC pipeline/remote operations on the checkout"),
    (r"\bzoo data synth\b", "generates the full synthetic marrow (minutes)"),
    (r"(^|\s)/(data|mnt)/|\.\./shared/", "points at the user's own data folder"),
    (r"<[^>]+>", "holds a placeholder to fill in (<parent run id>)"),
)


def shell_commands(text: str) -> list[str]:
    """The commands of every fenced bash block of ``text``, in order."""
    out: list[str] = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = _strip_comment(line).strip()
            if line:
                out.append(line)
    return out


def _strip_comment(line: str) -> str:
    """``cmd args   # comment`` -> ``cmd args`` (a ``#`` inside quotes is kept)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def skip_reason(command: str) -> str | None:
    for pattern, why in SKIP:
        if re.search(pattern, command):
            return why
    return None


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_extraction_joins_continuations_drops_comments_and_skips_training():
    text = ("```bash\nzoo models list   # the table\nzoo train tml --fold all\n"
            "curl -s http://x \\\n  -d '{\"a\": \"#b\"}'\n```\n```python\nprint(1)\n```\n")
    commands = shell_commands(text)
    assert commands == ["zoo models list", "zoo train tml --fold all", "curl -s http://x    -d '{\"a\": \"#b\"}'"]
    assert skip_reason(commands[0]) is None
    assert skip_reason(commands[1]) and skip_reason(commands[2])


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A throw-away project: tiny datasets named as the docs name them, tiny tml and guided models
    (v1 @production, v2, v3), a folder of cell images, the shipped class maps."""
    home = tmp_path_factory.mktemp("docs-home")
    env = dict(os.environ, ZOO_HOME=str(home), MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
               HF_HUB_OFFLINE="1", MPLBACKEND="Agg", MLFLOW_DISABLE_TELEMETRY="true",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    for var in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_REGISTRY_URI"):
        env.pop(var, None)
    (home / "maps").symlink_to(REPO / "maps")
    (home / "MLproject").symlink_to(REPO / "MLproject")
    setup = f"""
import sys, shutil
sys.path.insert(0, {str(REPO / 'tests')!r})
from pathlib import Path
from tiny_data import TINY, make_tiny_prepared  # make_tiny_prepared reads the module's CLASSES
from zoo.families import train
from zoo.tracking import registry
from mlflow.tracking import MlflowClient

home = Path({str(home)!r})
import tiny_data
# class names as the docs' datasets and the shipped maps (maps/pbc_to_zheng.yaml) name them
CLASSES = {{"synth": tiny_data.CLASSES,
           "pbc": ("band_neutrophil", "segmented_neutrophil", "promyelocyte", "myelocyte", "metamyelocyte",
                   "erythroblast"),
           "zheng": ("neutrophil", "immature_granulocyte", "erythroblast")}}
PALETTE = [(150, 60, 170), (230, 120, 60), (60, 90, 200), (60, 180, 90), (200, 60, 60), (120, 120, 30)]
for name, classes in CLASSES.items():
    tiny_data.CLASSES, tiny_data.PER_CLASS = classes, 9 if len(classes) > 3 else 12
    tiny_data.COLOURS = dict(zip(classes, PALETTE))
    make_tiny_prepared(home, name)
shutil.copytree(home / "raw_pbc" / "erythroblast", home / "cells")
for family, extra in (("tml", {{}}), ("guided", {{"guide": "fr_sim_mat"}})):
    train(family, {{**TINY, "dataset": "pbc", "svm_every": "1", **extra}}, progress=False)
    name = registry.model_name(family)
    v1 = MlflowClient().get_model_version(name, "1")
    for _ in range(2):  # v2, v3: the same run registered again, as after retraining
        registry.register(v1.run_id, family, v1.source)
    registry.promote(name, 1)
print("SETUP OK")
"""
    proc = subprocess.run([sys.executable, "-c", setup], env=env, cwd=home, capture_output=True, text=True,
                          timeout=900)
    assert "SETUP OK" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-4000:]
    return home, env


@pytest.mark.parametrize("doc", [p.name for p in documents()])
def test_every_documented_command_runs(project, doc):
    home, env = project
    path = REPO / doc if doc == "README.md" else REPO / "docs" / doc
    commands = shell_commands(path.read_text())
    ran, failures = [], []
    for command in commands:
        if skip_reason(command):
            continue
        runnable = re.sub(r"\[([^\]]*)\]", r"\1", command)  # optional synopsis parts, as given
        runnable = re.sub(r"^\.venv/bin/", "", runnable)
        proc = subprocess.run(["bash", "-c", runnable], env=env, cwd=home, capture_output=True, text=True,
                              timeout=600)
        ran.append(command)
        if proc.returncode != 0:
            failures.append(f"{doc}: `{command}` exited {proc.returncode}:\n{proc.stdout[-800:]}{proc.stderr[-1500:]}")
    assert not failures, "\n\n".join(failures)
    if doc in ("README.md", "serving.md"):  # these show the registry/evaluate/predict commands
        assert any(c.startswith("zoo models") for c in ran), f"no `zoo models` command of {doc} ran: {commands}"
    if doc == "serving.md":
        assert any(c.startswith("zoo predict") for c in ran) and any(c.startswith("zoo evaluate") for c in ran)
