#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv, build the synthetic bone marrow with DVC, train
# the guided family (guide fr_sim_mat, CPU preset) through `mlflow run`, promote it to
# production, and say how to open the UI. Extra arguments go to `mlflow run`, e.g.
#   bash scripts/quickstart.sh -P epochs=5 -P limit=1500      # a quicker look
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
export PATH="${ZOO_VENV:-$ROOT/.venv}/bin:$PATH" HF_HUB_OFFLINE=1 MPLBACKEND=Agg

echo "[quickstart] data: dvc repro (synthetic bone marrow -> data/cells -> data/prepared/synth)"
[ -d .dvc ] || dvc init -q
dvc repro

# Experiments made by the zoo keep their artifacts in ./mlartifacts (see docs/serving.md).
python -c "from zoo.tracking.store import ensure_experiments as e; e(['zoo-guided', 'zoo-tml', 'zoo-evaluate'])"

echo "[quickstart] training: mlflow run . -e guided -P guide=fr_sim_mat"
mlflow run . -e guided -P guide=fr_sim_mat --env-manager local --experiment-name zoo-guided "$@"

version=$(python - <<'PY'
from zoo.tracking import store
store.configure()
from mlflow import MlflowClient
print(MlflowClient().get_model_version_by_alias("zoo-guided", "candidate").version)
PY
)
echo "[quickstart] promoting zoo-guided version $version to production (gated: not worse than the holder)"
zoo models promote zoo-guided "$version" --alias production --reason "quickstart" || \
  echo "[quickstart] not promoted: the current production version is better (see above)"

cat <<TXT

Done. Open the MLflow UI:
  cd $ROOT && .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --default-artifact-root ./mlartifacts
  then browse http://127.0.0.1:5000 (experiment zoo-guided; model zoo-guided@production)
TXT
