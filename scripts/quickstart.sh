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

store.configure()
client = MlflowClient()
version = client.get_model_version_by_alias("zoo-guided", "candidate").version
print(f"[quickstart] promoting zoo-guided version {version} to production (gated: not worse than the holder)")
if zoo(["models", "promote", "zoo-guided", str(version), "--alias", "production", "--reason", "quickstart"]):
    print("[quickstart] not promoted: the current production version is better (see above)")
mv = client.get_model_version("zoo-guided", version)
run = client.get_run(mv.run_id)
m, p = run.data.metrics, run.data.params
aliases = ", ".join(f"@{a}" for a in (mv.aliases or [])) or "no alias"
print(f"\n[quickstart] registered zoo-guided version {mv.version} ({aliases}), run {mv.run_id}")
print(f"[quickstart] test on fold {p.get('fold', '?')} of {p.get('dataset', '?')}: "
      f"macro-F {m.get('test_macro_f1', float('nan')):.3f} strict / "
      f"{m.get('test_macro_f1_tolerant', float('nan')):.3f} tolerant, "
      f"MCS {m.get('test_mcs', float('nan')):.3f}, best epoch {int(m.get('best_epoch', 0))}"
      + (" (stopped on the time budget)" if m.get("stopped_on_budget") else ""))
PY
promote_s=$((SECONDS - promote_start))
echo "[quickstart] time: setup ${setup_s} s, data ${data_s} s, training + registration ${train_s} s," \
  "promotion + summary ${promote_s} s; $((SECONDS - setup_s - data_s)) s after setup and data, total ${SECONDS} s"

cat <<TXT

Done. Open the MLflow UI:
  cd $ROOT && .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --default-artifact-root ./mlartifacts
  then browse http://127.0.0.1:5000 (experiment zoo-guided; model zoo-guided@production)
TXT
