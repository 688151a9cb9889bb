#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment in .venv and installs marrow-zoo into it.
# Idempotent: a second run only checks what is there. Usable as `bash scripts/setup.sh` or sourced.
# pip's own output (hundreds of lines, among them build-backend deprecation notices) goes to
# .venv/setup.log; the terminal gets one line per step and the log's tail if a step fails.
# ZOO_SETUP_VERBOSE=1 shows everything.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ZOO_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
export PIP_DISABLE_PIP_VERSION_CHECK=1
SECONDS=0

# Run a step quietly, logging its output; on failure show the end of the log and stop.
quiet() {
  local what="$1"; shift
  echo "[setup] $what"
  if [ "${ZOO_SETUP_VERBOSE:-0}" = 1 ]; then "$@"; return; fi
  mkdir -p "$VENV"
  if ! "$@" >>"$VENV/setup.log" 2>&1; then
    echo "[setup] FAILED: $what — last lines of $VENV/setup.log:" >&2
    tail -n 30 "$VENV/setup.log" >&2
    exit 1
  fi
}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV ($("$PY" --version))"
  "$PY" -m venv "$VENV"
  quiet "upgrading pip" "$VENV/bin/python" -m pip install -q --upgrade pip
fi
# torch/torchvision first and pinned: these exact builds lie on the machine's disk; an unpinned
# torch would pull a multi-GB CUDA build from the network.
if ! "$VENV/bin/python" -c "import torch, torchvision, sys; sys.exit(torch.__version__.split('+')[0] != '2.14.1')" 2>/dev/null; then
  quiet "installing torch 2.14.1 / torchvision 0.29.1 (pinned; the largest package: several GB)" \
    "$VENV/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
fi
if ! "$VENV/bin/python" -c "import zoo, mlflow, timm, umap, igraph, pytest" 2>/dev/null \
   || [ "$ROOT/pyproject.toml" -nt "$VENV/.zoo-installed" ]; then
  quiet "installing marrow-zoo and its dependencies: mlflow, timm, umap-learn, optuna, dvc... (pip install -e .[dev,explain]; a few minutes)" \
    "$VENV/bin/python" -m pip install -q -e "$ROOT[dev,explain]"
  touch "$VENV/.zoo-installed"
fi
# umap-learn's kernels are compiled by numba on first use (~25 s on 2 cores), and zoo.numba_cache keeps
# all of them on disk. Pay that here, once per machine, rather than inside the first training run's
# embedding map. The cache lives in ~/.cache/marrow-zoo/numba; the marker is per environment.
if [ ! -f "$VENV/.zoo-numba-warm" ]; then
  quiet "compiling umap-learn's numba kernels once (cached in ~/.cache/marrow-zoo/numba)" \
    "$VENV/bin/python" -c "import numpy as np; from zoo.evaluate.embedding_map import reduce_2d; \
reduce_2d(np.random.default_rng(0).normal(size=(300, 16)).astype('float32'), method='umap')"
  touch "$VENV/.zoo-numba-warm"
fi
echo "[setup] ready in ${SECONDS} s: $VENV ($("$VENV/bin/python" -c 'import torch, mlflow; print("torch", torch.__version__, "mlflow", mlflow.__version__)'))"
