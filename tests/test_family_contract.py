"""The family contract, generated from the family registry: for every registered family, on the
tiny 3-class set of tests/tiny_data.py, one epoch trains through the runner, the ZooModel is
logged, loads in a fresh process and predicts with its declared schema (also for an empty input),
the version is registered with the gate tags, and a promotion gate runs. A new family is tested by
being registered; a family that needs a smaller configuration declares ``contract_params``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zoo.families import FAMILIES

pytestmark = pytest.mark.slow  # one tiny training + a fresh process per family: ~10-30 s each

FRESH = r"""
import json, sys
import numpy as np
from zoo.models import load_zoo_model
folder, images = sys.argv[1], np.load(sys.argv[2], allow_pickle=False)["x"]
model = load_zoo_model(folder, device="cpu")
out, empty = model.predict(images), model.predict(images[:0])
print("RESULT" + json.dumps({"kind": model.kind, "schema": [c for c, _ in model.output_schema()],
                             "columns": list(out.columns), "rows": len(out), "empty_columns": list(empty.columns),
                             "empty_rows": len(empty)}))
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    from tiny_data import tiny_project

    home = tmp_path_factory.mktemp("contract")
    with tiny_project(home):
        yield home


@pytest.mark.parametrize("family", FAMILIES.names())
def test_family_contract(family, home, tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient
    from tiny_data import CLASSES, TINY, cells

    from zoo.families.runner import build_family, run_training
    from zoo.tracking import registry

    cls = FAMILIES.get(family)
    raw = {**TINY, **cls.contract_params, "register": "true"}
    fam = build_family(family, raw)
    result = run_training(fam, progress=False)

    # metrics and version tags of the protocol
    fold = result.folds[0]
    primary = f"test_{cls.primary_metric}"
    assert primary in fold.metrics and np.isfinite(fold.metrics[primary])
    assert result.registered, "the contract run registers its model"
    name, version = result.registered.split("/")
    mv = MlflowClient().get_model_version(name, version)
    t = mv.tags
    assert (t["family"], t["kind"], t["primary_metric"], t["fold"], t["limit"]) == \
        (family, cls.kind, cls.primary_metric, "0", "none")
    assert int(t["n_test"]) == 12 and len(t["test_rows_digest"]) == 16
    assert float(t[primary]) == pytest.approx(fold.metrics[primary])
    assert ("test_mcs" in t) == cls.has_classes
    meta = mlflow.models.get_model_info(fold.model_uri).metadata
    assert meta["zoo_kind"] == cls.kind and meta["training_dataset"] == "tiny" and meta["training_fold"] == "0"

    # the model folder loads in a fresh process and predicts its declared columns
    local = Path(mlflow.artifacts.download_artifacts(fold.model_uri)) / "artifacts" / "zoo_model"
    images = tmp_path / "x.npz"
    np.savez(images, x=cells(list(CLASSES), seed=11))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", FRESH, str(local), str(images)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert out["kind"] == cls.kind and out["rows"] == 3 and out["empty_rows"] == 0
    assert out["columns"] == out["schema"] == out["empty_columns"]
    assert out["schema"] == fam.output_columns(list(CLASSES))

    # a promotion gate runs: the first promotion passes, the same rows compare, other rows do not
    promoted = registry.promote(name, version, who="contract-test")
    assert promoted.tags["promoted_to_alias"] == "production"
    gate = registry._gate_values(mv, name)
    registry.check_gates(gate, gate, "candidate", "holder")
    with pytest.raises(registry.PromotionRefused, match="other rows"):
        registry.check_gates({**gate, "rows": "0" * 16}, gate, "candidate", "holder")


def test_final_model_trains_on_every_row_with_the_cv_choice(home):
    """fold=all, then fold=final with cv_run: trained for the CV's median best epoch on all rows but
    a validation slice, registered with the CV's estimate and the digest of all its test rows."""
    from mlflow.tracking import MlflowClient
    from tiny_data import TINY

    from zoo.families.runner import run_training

    raw = {**TINY, **FAMILIES.get("tml").contract_params, "epochs": "2", "patience": "2"}
    cv = run_training("tml", {**raw, "fold": "all", "register": "false"}, progress=False)
    with pytest.raises(ValueError, match="cv_run"):
        run_training("tml", {**raw, "fold": "final"}, progress=False)
    final = run_training("tml", {**raw, "fold": "final", "cv_run": cv.run_id}, progress=False)
    parent = MlflowClient().get_run(cv.run_id).data
    name, version = final.registered.split("/")
    t = MlflowClient().get_model_version(name, version).tags
    assert (t["fold"], t["estimate"], t["cv_parent"]) == ("final", "cv", cv.run_id)
    assert t["test_rows_digest"] == parent.tags["cv_test_rows_digest"] and t["n_test"] == "36"
    assert float(t["test_macro_f1"]) == pytest.approx(cv.summary["test_macro_f1"]["mean"])
    assert final.folds[0].epochs_run == int(parent.tags["cv_epochs"])
