"""DDP training (torchrun, gloo on CPU): the shard and slice arithmetic, the Trainer's collectives
checked rank against rank, and whole jobs as users start them — ``mlflow run -P nproc=2`` giving
one run and one registered model with the metrics of a 1-process run, and a job whose worker is
SIGKILLed being restarted by torchrun and resuming from its checkpoint in the same run.

The process tests start real process groups on loopback (torchrun --standalone) and stop them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tiny_data import make_tiny_prepared, tiny_project

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY_ARGS = ["--dataset", "tiny", "--img_size", "32", "--batch_size", "8", "--backbone", "resnet10t",
             "--num_workers", "0", "--seed", "0"]


# --- arithmetic ----------------------------------------------------------------------------------
def test_shards_are_disjoint_cover_every_row_and_keep_every_class_share():
    from zoo.train.distributed import shard_positions

    labels = np.array(["a"] * 10 + ["b"] * 7 + ["c"] * 3)
    shards = [shard_positions(labels, r, 3, seed=1) for r in range(3)]
    together = np.concatenate(shards)
    assert sorted(together.tolist()) == list(range(20))  # every row exactly once
    for s in shards:
        counts = {c: int((labels[s] == c).sum()) for c in "abc"}
        assert counts["a"] in (3, 4) and counts["b"] in (2, 3) and counts["c"] == 1, counts
    assert np.array_equal(shard_positions(labels, 1, 3, seed=1), shards[1])  # deterministic
    with pytest.raises(ValueError, match="rank 3"):
        shard_positions(labels, 3, 3)


def test_chunks_in_rank_order_are_the_whole_range():
    from zoo.train.distributed import chunk

    for n, world in ((10, 2), (7, 3), (1, 2), (0, 2)):
        assert [i for r in range(world) for i in chunk(n, r, world)] == list(range(n))


def test_make_loaders_gives_each_rank_its_own_training_rows_and_every_rank_the_whole_val_set(tmp_path):
    from zoo.data.datasets import make_loaders

    with tiny_project(tmp_path):
        full = make_loaders("tiny", 0, 32, 8, num_workers=0, sampler="m_per_class", m_per_class=4)
        parts = [make_loaders("tiny", 0, 32, 8, num_workers=0, sampler="m_per_class", m_per_class=4,
                              shard=(r, 2)) for r in range(2)]
    rows = [set(map(str, p["train"].dataset.paths)) for p in parts]
    assert not rows[0] & rows[1] and rows[0] | rows[1] == set(map(str, full["train"].dataset.paths))
    assert [p["train"].dataset.shard for p in parts] == [(0, 2), (1, 2)]
    for p in parts:
        assert list(map(str, p["val"].dataset.paths)) == list(map(str, full["val"].dataset.paths))
        assert next(iter(p["train"]))[0].shape[0] == 8  # a full batch even from a 6-row shard


def test_nproc_above_one_outside_torchrun_says_how_to_launch(tmp_path):
    from zoo.families import train

    with tiny_project(tmp_path):
        with pytest.raises(ValueError, match="launched by `zoo train` / `mlflow run`"):
            train("tml", {"dataset": "tiny", "nproc": "2"})


# --- processes -----------------------------------------------------------------------------------
def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ, ZOO_HOME=str(home), MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
               HF_HUB_OFFLINE="1", MPLBACKEND="Agg", MLFLOW_DISABLE_TELEMETRY="true",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    for var in ("MLFLOW_RUN_ID", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID",
                "WORLD_SIZE", "RANK", "LOCAL_RANK", "ZOO_DATA_DIR"):
        env.pop(var, None)
    return env


@pytest.fixture()
def home(tmp_path):
    with tiny_project(tmp_path):
        pass  # writes the tiny prepared dataset; the subprocesses get their own environment
    return tmp_path


def _run(cmd, env, cwd, timeout=600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def _runs(home: Path, env) -> list[dict]:
    code = ("import json, mlflow\nfrom zoo.tracking.store import configure\nconfigure(); c = mlflow.MlflowClient()\n"
            "out = []\n"
            "for r in mlflow.search_runs(search_all_experiments=True, output_format='list'):\n"
            "    h = c.get_metric_history(r.info.run_id, 'val_macro_f1')\n"
            "    out.append({'id': r.info.run_id, 'status': r.info.status, 'params': r.data.params,\n"
            "                'metrics': r.data.metrics, 'steps': sorted(m.step for m in h)})\n"
            "v = [dict(run=m.run_id, name=m.name) for m in c.search_model_versions()]\n"
            "print(json.dumps({'runs': out, 'versions': v}))\n")
    return json.loads(_run([sys.executable, "-c", code], env, home).stdout.strip().splitlines()[-1])


def test_trainer_ranks_end_with_identical_weights_and_gather_the_whole_validation_set_in_order(home, tmp_path):
    out = tmp_path / "ranks"
    out.mkdir()
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
          str(REPO / "tests" / "ddp_worker.py"), str(out)], _env(home), home)
    r0, r1 = (np.load(out / f"rank{r}.npz") for r in range(2))
    j0, j1 = (json.loads((out / f"rank{r}.json").read_text()) for r in range(2))
    weights = [k for k in r0.files if k.startswith("w:")]
    assert weights and all(np.array_equal(r0[k], r1[k]) for k in weights)  # gradients and buffers in sync
    # every rank holds the whole validation set, in the loader's order, as one process embeds it
    assert np.array_equal(r0["gathered_y"], r0["local_y"]) and np.array_equal(r1["gathered"], r0["gathered"])
    np.testing.assert_allclose(r0["gathered"], r0["local"], rtol=1e-4, atol=1e-5)
    assert (j0["shard"], j1["shard"]) == ([0, 2], [1, 2])
    assert not set(j0["train_rows"]) & set(j1["train_rows"])
    assert j0["history"] == j1["history"] and len(j0["history"]) == 2  # rank 0's decisions on both


def test_rank_0s_budget_decides_the_shortened_last_epoch_on_every_rank(home, tmp_path):
    """Each rank's budget clock runs at its own speed (10 s a batch on rank 0, 1 s on rank 1): rank 0's
    stops the run after 2 whole epochs and half of a third, and rank 1 follows it step for step."""
    out = tmp_path / "ranks"
    out.mkdir()
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
          str(REPO / "tests" / "ddp_worker.py"), str(out), "budget"], _env(home), home)
    r0, r1 = (np.load(out / f"rank{r}.npz") for r in range(2))
    j0, j1 = (json.loads((out / f"rank{r}.json").read_text()) for r in range(2))
    assert all(np.array_equal(r0[k], r1[k]) for k in r0.files if k.startswith("w:"))
    assert j0["history"] == j1["history"] and len(j0["history"]) == 3 and j0["global_step"] == j1["global_step"]
    last = j0["history"][-1]
    assert min(j0["steps_per_epoch"], j1["steps_per_epoch"]) >= 2  # else no part of an epoch can fit
    assert last["stopped_on_budget"] == 1.0 and 0.2 <= last["epoch_fraction"] < 1.0 and last["validated"] == 1.0


@pytest.mark.slow
def test_mlflow_run_nproc_2_makes_one_run_one_model_and_matches_one_process(home):
    env = _env(home)
    common = [*TINY_ARGS, "--epochs", "4", "--patience", "4"]
    _run([str(BIN / "zoo"), "train", "tml", *common, "--register", "false"], env, home)
    single = _runs(home, env)["runs"]
    assert len(single) == 1
    params = [f"{k[2:]}={v}" for k, v in zip(common[::2], common[1::2])]
    cmd = [str(BIN / "mlflow"), "run", str(REPO), "-e", "tml", "--env-manager", "local", "--experiment-name",
           "zoo-tml", *[x for p in [*params, "nproc=2"] for x in ("-P", p)]]
    proc = _run(cmd, env, home)
    assert "in 2 processes" in proc.stdout + proc.stderr
    state = _runs(home, env)
    ddp = [r for r in state["runs"] if r["id"] != single[0]["id"]]
    assert len(ddp) == 1, [r["params"].get("nproc") for r in ddp]  # rank 1 never made a run
    ddp = ddp[0]
    assert ddp["status"] == "FINISHED" and ddp["params"]["nproc"] == "2"
    assert ddp["steps"] == [1, 2, 3, 4]  # one value per epoch: only rank 0 logs
    assert state["versions"] == [{"run": ddp["id"], "name": "zoo-tml"}]
    # 3 trivially separable classes: both converge; a broken gather or shard would not
    one, two = single[0]["metrics"]["test_macro_f1"], ddp["metrics"]["test_macro_f1"]
    assert two >= 0.8 and abs(one - two) <= 0.2, (one, two)


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split() if (task / "children").exists() else []
        kids += [int(k) for k in text]
    return kids


def _rank_of(pid: int) -> int | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        if item.startswith(b"RANK="):
            return int(item[5:])
    return None


@pytest.mark.slow
def test_sigkilled_worker_is_restarted_by_torchrun_and_resumes_its_checkpoint_in_the_same_run(home):
    if not Path("/proc/self/task").is_dir():
        pytest.skip("needs /proc to find the worker processes")
    env = _env(home)
    epochs = 14
    cmd = [str(BIN / "zoo"), "train", "tml", *TINY_ARGS, "--epochs", str(epochs), "--patience", str(epochs),
           "--register", "false", "--nproc", "2", "--restarts", "1"]
    proc = subprocess.Popen(cmd, env=env, cwd=home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    killed = None
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and killed is None:
            last = list((home / "checkpoints" / "tml").glob("*/last.pt"))
            if last:
                time.sleep(1.0)  # into a later epoch than the checkpoint's
                for pid in _children(proc.pid):
                    if _rank_of(pid) == 1:
                        os.kill(pid, signal.SIGKILL)
                        killed = pid
            time.sleep(0.2)
        assert killed is not None, "the job ended before a worker could be killed"
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, output[-6000:]
    assert "torchrun restart 1: resuming from the last checkpoint" in output
    assert output.count("torchrun restart 1") == 1  # rank 0 reports; the other rank keeps quiet
    runs = _runs(home, env)["runs"]
    assert len(runs) == 1, runs  # the restarted job continued rank 0's run
    assert runs[0]["status"] == "FINISHED"
    assert 1 <= runs[0]["metrics"]["resumed_after_epoch"] < epochs  # from the checkpoint, not epoch 0
    assert sorted(set(runs[0]["steps"])) == list(range(1, epochs + 1))
