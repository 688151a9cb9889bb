#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment in .venv and installs marrow-zoo into it.
# Idempotent: a second run only checks what is there. Usable as `bash scripts/setup.sh` or sourced.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ZOO_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV ($("$PY" --version))"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
# torch/torchvision first and pinned: these exact builds lie on the machine's disk; an unpinned
# torch would pull a multi-GB CUDA build from the network.
if ! "$VENV/bin/python" -c "import torch, torchvision, sys; sys.exit(torch.__version__.split('+')[0] != '2.14.1')" 2>/dev/null; then
  echo "[setup] installing torch 2.14.1 / torchvision 0.29.1"
  "$VENV/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
fi
if ! "$VENV/bin/python" -c "import zoo, mlflow, timm, umap, igraph, pytest" 2>/dev/null \
   || [ "$ROOT/pyproject.toml" -nt "$VENV/.zoo-installed" ]; then
  echo "[setup] installing marrow-zoo and its dependencies (pip install -e .[dev,explain])"
  "$VENV/bin/python" -m pip install -q -e "$ROOT[dev,explain]"
  touch "$VENV/.zoo-installed"
fi
echo "[setup] ready: $VENV ($("$VENV/bin/python" -c 'import torch, mlflow; print("torch", torch.__version__, "mlflow", mlflow.__version__)'))"
