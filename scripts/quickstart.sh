#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv, build the synthetic bone marrow with DVC, train
# the guided family (guide fr_sim_mat, CPU preset) through `mlflow run`, promote it to
# production, and say how to open the UI. Extra arguments go to `mlflow run`, e.g.
#   bash scripts/quickstart.sh -P budget=2 -P limit=1500     # a quicker look
#   bash scripts/quickstart.sh -P budget=none -P epochs=30    # the old 30-epoch run
# The training is time-boxed: -P budget=4.1 (minutes; the cosine schedule spans it, see
# `zoo train guided --help`). Later arguments override it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS=0
bash "$ROOT/scripts/setup.sh"
setup_s=$SECONDS
cd "$ROOT"
export PATH="${ZOO_VENV:-$ROOT/.venv}/bin:$PATH" HF_HUB_OFFLINE=1 MPLBACKEND=Agg

echo "[quickstart] data: dvc repro (synthetic bone marrow -> data/cells -> data/prepared/synth)"
[ -d .dvc ] || dvc init -q
dvc repro
data_s=$((SECONDS - setup_s))

# Experiments made by the zoo keep their artifacts in ./mlartifacts (see docs/serving.md).
python -c "from zoo.tracking.store import ensure_experiments as e; e(['zoo-guided', 'zoo-tml', 'zoo-evaluate'])"

echo "[quickstart] training: mlflow run . -e guided -P guide=fr_sim_mat"
train_start=$SECONDS
mlflow run . -e guided -P guide=fr_sim_mat -P budget=4.1 --env-manager local --experiment-name zoo-guided "$@"
train_s=$((SECONDS - train_start))

# Promotion and the summary in one process (each python + mlflow start-up costs seconds on 2 cores).
# What was trained, how well, and where it is: read back from the registry, not from the log above.
promote_start=$SECONDS
python - <<'PY'
from mlflow import MlflowClient

from zoo.cli import main as zoo
from zoo.tracking import store
from zoo.tracking.summary import version_summary

store.configure()
client = MlflowClient()
version = client.get_model_version_by_alias("zoo-guided", "candidate").version
print(f"[quickstart] promoting zoo-guided version {version} to production (gated: not worse than the holder)")
if zoo(["models", "promote", "zoo-guided", str(version), "--alias", "production", "--reason", "quickstart"]):
    print("[quickstart] not promoted: the current production version is better (see above)")
print()
for line in version_summary(client, "zoo-guided", version,
                            untimed_command="bash scripts/quickstart.sh -P budget=none -P epochs=30"):
    print(f"[quickstart] {line}")
PY
promote_s=$((SECONDS - promote_start))
echo "[quickstart] time: setup ${setup_s} s, data ${data_s} s, training + registration ${train_s} s," \
  "promotion + summary ${promote_s} s; $((SECONDS - setup_s - data_s)) s after setup and data, total ${SECONDS} s"

cat <<TXT

Done. Open the MLflow UI:
  cd $ROOT && .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --default-artifact-root ./mlartifacts
  then browse http://127.0.0.1:5000 (experiment zoo-guided; model zoo-guided@production)
TXT
