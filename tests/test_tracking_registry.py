"""Registry and promotion (zoo.tracking.registry): version tags, aliases, gates, rollback, and
that refused or malformed requests leave the registry untouched. The registered models here are a
trivial pyfunc: the gates only read version tags (the real pipeline is covered in
test_tracking_pyfunc.py)."""

from __future__ import annotations

import argparse
import shutil

import pytest

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

from zoo.tracking import registry, runs  # noqa: E402
from zoo.tracking.registry import PromotionRefused  # noqa: E402

DIGEST = "a" * 32


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory):
    """An initialised, empty MLflow SQLite file (creating one runs ~50 schema migrations: seconds);
    each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(tmp_path, monkeypatch, empty_db):
    shutil.copy(empty_db, tmp_path / "mlflow.db")
    for var in ("MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    yield tmp_path
    if mlflow.active_run():
        mlflow.end_run()


ROWS = "f0rows0000000000"


def train(f1: float | None, mcs: float | None, digest: str = DIGEST, family: str = "tml", register: bool = True,
          rows: str = ROWS, fold: int = 0, limit: str = "none"):
    """A finished 'training' run with test metrics, the gate tags the runner sets (test rows,
    fold, limit, kind, primary metric) and a logged model; registered as a candidate."""
    gate = {"dataset": "synth", "dataset_digest": digest, "kind": "embedding_svm", "primary_metric": "macro_f1",
            "direction": "maximize", "has_classes": "true", "limit": limit, "n_test": "100", "test_rows_digest": rows}
    with runs.start_run(family, fold=fold, tags=gate) as run:
        metrics = {k: v for k, v in {"test_macro_f1": f1, "test_mcs": mcs}.items() if v is not None}
        run.log_metrics(metrics)
        info = mlflow.pyfunc.log_model(name="model", python_model=Constant(), pip_requirements=["mlflow"])
    if not register:
        return run.run_id, info.model_uri
    return registry.register(run.run_id, family, info.model_uri, {"guide": "fr_sim_mat"} if family == "guided" else {})


def aliases(name="zoo-tml"):
    return {a: str(v) for a, v in MlflowClient().get_registered_model(name).aliases.items()}


def snapshot(name="zoo-tml"):
    client = MlflowClient()
    return aliases(name), {str(v.version): dict(v.tags) for v in client.search_model_versions(f"name='{name}'")}


def test_register_tags_and_candidate_alias(store):
    mv = train(0.8, 0.5)
    assert mv.name == "zoo-tml" and str(mv.version) == "1"
    t = mv.tags
    assert (t["family"], t["dataset"], t["dataset_digest"]) == ("tml", "synth", DIGEST)
    assert float(t["test_macro_f1"]) == 0.8 and float(t["test_mcs"]) == 0.5
    assert t["git_commit"] == "unknown" and t["run_id"]
    assert (t["fold"], t["limit"], t["n_test"], t["test_rows_digest"]) == ("0", "none", "100", ROWS)
    assert (t["kind"], t["primary_metric"]) == ("embedding_svm", "macro_f1")
    assert aliases() == {"candidate": "1"}
    mv2 = train(0.9, 0.4, family="guided")
    assert mv2.name == "zoo-guided" and mv2.tags["guide"] == "fr_sim_mat"


def test_register_validates_before_writing(store):
    run_id, uri = train(0.8, None, register=False)  # no test_mcs
    with pytest.raises(ValueError, match="test_mcs"):
        registry.register(run_id, "tml", uri)
    with pytest.raises(ValueError, match="no MLflow model"):
        registry.register(run_id, "tml", f"runs:/{run_id}/nothing-here", {"test_mcs": 0.1})
    with pytest.raises(ValueError, match="must be a number"):
        registry.register(run_id, "tml", uri, {"test_mcs": "lots"})
    with pytest.raises(ValueError, match="family"):
        registry.register(run_id, "Bad Family", uri, {"test_mcs": 0.1})
    with pytest.raises(ValueError, match="not found"):
        registry.register("0" * 32, "tml", uri, {"test_mcs": 0.1})
    assert MlflowClient().search_registered_models() == []  # nothing half-written
    mv = registry.register(run_id, "tml", uri, {"test_mcs": 0.3})  # tags complete the run's metrics
    assert float(mv.tags["test_mcs"]) == 0.3


def test_first_promotion_and_gates(store):
    v1 = train(0.80, 0.50)
    p = registry.promote("zoo-tml", v1.version, who="alice", why="first model")
    assert aliases() == {"candidate": "1", "production": "1"}
    assert (p.tags["promoted_by"], p.tags["promotion_reason"]) == ("alice", "first model")
    assert p.tags["promoted_from_alias"] == "candidate" and p.tags["promoted_to_alias"] == "production"
    assert p.tags["promoted_at"].endswith("+00:00")

    worse_f1 = train(0.70, 0.40)
    before = snapshot()
    with pytest.raises(PromotionRefused, match=r"macro-F 0\.7000 < 0\.8000"):
        registry.promote("zoo-tml", worse_f1.version)
    worse_mcs = train(0.85, 0.60)
    with pytest.raises(PromotionRefused, match=r"MCS 0\.6000 > 0\.5000"):
        registry.promote("zoo-tml", worse_mcs.version)
    other_data = train(0.95, 0.10, digest="b" * 32)
    with pytest.raises(PromotionRefused) as err:
        registry.promote("zoo-tml", other_data.version)
    assert "b" * 32 in str(err.value) and DIGEST in str(err.value)
    assert isinstance(err.value, ValueError)
    after = snapshot()
    assert after[1] == before[1] | {v: after[1][v] for v in after[1] if v not in before[1]}  # old versions untouched
    assert after[0]["production"] == "1"

    # within tolerance: macro-F 0.7 vs 0.8 passes with tolerance 0.1 (MCS 0.4 is better anyway)
    registry.promote("zoo-tml", worse_f1.version, tolerance=0.1, who="bob")
    assert aliases()["production"] == str(worse_f1.version) and aliases()["previous"] == "1"


def test_promotion_refuses_a_candidate_tested_on_other_rows(store):
    v1 = train(0.80, 0.50)
    registry.promote("zoo-tml", v1.version)
    # a better score, but on fold 1 with limit=400: another test set, so not comparable
    other = train(0.95, 0.10, rows="f1limit400rows00", fold=1, limit="400")
    assert other.tags["fold"] == "1" and other.tags["limit"] == "400" and other.tags["n_test"] == "100"
    before = snapshot()
    with pytest.raises(PromotionRefused) as err:
        registry.promote("zoo-tml", other.version)
    assert "f1limit400rows00" in str(err.value) and ROWS in str(err.value) and "zoo evaluate" in str(err.value)
    assert snapshot() == before
    like = train(0.85, 0.40)  # same rows, better: passes
    assert str(registry.promote("zoo-tml", like.version).version) == str(like.version)
    assert aliases()["production"] == str(like.version)
    forced = registry.promote("zoo-tml", other.version, force=True, why="new test set")
    assert forced.tags["promotion_forced"] == "true"


def test_gate_uses_the_primary_metric_and_direction(store):
    """A family scored by a loss (minimize, no classes) is gated on that metric alone."""
    from zoo.tracking.registry import check_gates

    def gate(value, primary="test_loss", direction="minimize", rows=ROWS):
        return {"metrics": {primary: value}, "primary": primary, "direction": direction, "digest": DIGEST,
                "rows": rows, "fold": "0", "limit": "none", "n_test": "10"}

    check_gates(gate(0.2), gate(0.3), "cand", "held")       # lower loss: better
    with pytest.raises(PromotionRefused, match=r"test_loss 0\.4000 > 0\.3000"):
        check_gates(gate(0.4), gate(0.3), "cand", "held")
    with pytest.raises(PromotionRefused, match="not comparable"):
        check_gates(gate(0.2), gate(0.3, primary="test_macro_f1", direction="maximize"), "cand", "held")


def test_force_rollback_and_tags(store):
    v1 = train(0.80, 0.50)
    registry.promote("zoo-tml", v1.version)
    v2 = train(0.50, 0.90, digest="c" * 32)
    with pytest.raises(PromotionRefused):
        registry.promote("zoo-tml", v2.version)
    forced = registry.promote("zoo-tml", v2.version, force=True, who="carol", why="hotfix")
    assert forced.tags["promotion_forced"] == "true" and forced.tags["replaced_version"] == "1"
    assert aliases()["production"] == "2" and aliases()["previous"] == "1"
    assert MlflowClient().get_model_version("zoo-tml", "1").tags["replaced_by_version"] == "2"

    restored = registry.rollback("zoo-tml", who="dave", why="v2 misbehaves")
    assert str(restored.version) == "1"
    assert aliases()["production"] == "1" and aliases()["previous"] == "2"
    assert restored.tags["rolled_back_by"] == "dave" and restored.tags["rollback_reason"] == "v2 misbehaves"
    assert MlflowClient().get_model_version("zoo-tml", "2").tags["rolled_back_from_alias"] == "production"
    registry.rollback("zoo-tml")  # a second rollback undoes the first
    assert aliases()["production"] == "2" and aliases()["previous"] == "1"


def test_staging_has_its_own_previous(store):
    v1, v2, v3 = train(0.8, 0.5), train(0.81, 0.5), train(0.82, 0.5)
    registry.promote("zoo-tml", v1.version)
    registry.promote("zoo-tml", v2.version, alias="staging")
    registry.promote("zoo-tml", v3.version, alias="staging")
    a = aliases()
    assert a["production"] == "1" and a["staging"] == "3" and a["previous_staging"] == "2"
    assert "previous" not in a
    with pytest.raises(ValueError, match="no @previous version"):
        registry.rollback("zoo-tml")


def test_bad_promotion_requests_change_nothing(store):
    v1 = train(0.8, 0.5)
    registry.promote("zoo-tml", v1.version)
    before = snapshot()
    with pytest.raises(ValueError, match="alias must be one of"):
        registry.promote("zoo-tml", v1.version, alias="prodution")
    with pytest.raises(ValueError, match="no version"):
        registry.promote("zoo-tml", 42)
    with pytest.raises(ValueError, match="no registered model"):
        registry.promote("zoo-nope", 1)
    with pytest.raises(ValueError, match="tolerance"):
        registry.promote("zoo-tml", v1.version, tolerance=-1)
    assert str(registry.promote("zoo-tml", v1.version).version) == "1"  # already production: no-op
    assert snapshot() == before


def test_list_models(store):
    v1 = train(0.8, 0.5)
    train(0.9, 0.4)
    registry.promote("zoo-tml", v1.version)
    df = registry.list_models()
    assert list(df["version"]) == [2, 1]
    assert df.set_index("version").loc[1, "aliases"] == "production"
    assert df.set_index("version").loc[2, "aliases"] == "candidate"
    assert df["test_macro_f1"].tolist() == [0.9, 0.8]
    assert registry.list_models("zoo-tml").shape[0] == 2
    with pytest.raises(ValueError, match="no registered model"):
        registry.list_models("zoo-missing")


def test_cli_promote_list_rollback(store, capsys):
    from zoo.tracking.cli import add_commands

    parser = argparse.ArgumentParser(prog="zoo")
    add_commands(parser.add_subparsers(dest="command"))

    def run(*argv):
        args = parser.parse_args(list(argv))
        return args.func(args)

    v1, v2 = train(0.8, 0.5), train(0.9, 0.4)
    assert run("models", "promote", "zoo-tml", str(v1.version), "--reason", "baseline") == 0
    assert run("models", "promote", "zoo-tml", str(v2.version)) == 0
    assert "v1 is now @previous" in capsys.readouterr().out
    assert run("models", "list", "zoo-tml") == 0
    out = capsys.readouterr().out
    assert "production" in out and "previous" in out and "0.9" in out
    assert run("models", "rollback", "zoo-tml") == 0
    assert aliases()["production"] == "1"
    with pytest.raises(SystemExit):
        run("models", "promote", "zoo-tml", "x")
