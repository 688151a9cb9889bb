#!/usr/bin/env bash
# Sets up .venv (scripts/setup.sh) and runs the test suite. Extra arguments go to pytest,
# e.g. `bash scripts/test.sh -m "not slow"` or `bash scripts/test.sh tests/test_knowledge.py`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
# Offline by design: nothing may download weights or data at run time (timm would retry ~45 s).
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg
# --durations: the slowest tests, in every log (where CI time goes, machine by machine).
exec "${ZOO_VENV:-$ROOT/.venv}/bin/python" -m pytest -q -ra --timeout=900 --durations=25 "$@"
