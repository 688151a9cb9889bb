"""benchmarks/equal_wall_time.py: the sides it runs, the intervals it reports, the folds it keeps."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


@pytest.fixture(scope="module")
def ewt():
    spec = importlib.util.spec_from_file_location("equal_wall_time", REPO / "benchmarks" / "equal_wall_time.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sides_and_folds_parse_and_bad_ones_name_the_fix(ewt):
    assert ewt.parse_side("tml:ce_on=both,margin=0.2") == {"label": "tml:ce_on=both,margin=0.2", "family": "tml",
                                                             "params": "ce_on=both,margin=0.2"}
    assert ewt.parse_side("plain:fused")["family"] is None
    with pytest.raises(ValueError, match="unknown family 'tmll'.*guided.*tml"):
        ewt.parse_side("tmll")
    with pytest.raises(ValueError, match="k=v"):
        ewt.parse_side("tml:semihard")
    assert ewt.parse_folds("0-5") == [0, 1, 2, 3, 4, 5] and ewt.parse_folds("1,3") == [1, 3]


def _row(side, fold, test, val=None):
    return {"side": side, "fold": fold, "epochs": 15, "wall_seconds": 750.0, "test_macro_f1": test, "val_macro_f1": val,
            "train_seconds": 640.0}


def test_report_gives_paired_intervals_against_plain_on_test_and_the_reference_on_validation(ewt):
    from zoo.evaluate.paired import paired_difference

    plain = [0.82, 0.83, 0.81]
    tml = [0.80, 0.82, 0.79]            # 1-2 pp under on every fold: the interval excludes 0
    semi = [0.83, 0.81, 0.82]           # scattered around plain: a tie
    rows = ([_row("plain", f, v) for f, v in enumerate(plain)]
            + [_row("tml", f, v, val=0.80 + f / 100) for f, v in enumerate(tml)]
            + [_row("tml:type_of_triplets=semihard", f, v, val=0.80 + f / 100 + (0.01, -0.02, 0.0)[f])
               for f, v in enumerate(semi)])
    text = ewt.report(rows, ["plain", "tml", "tml:type_of_triplets=semihard"], "t")
    d = paired_difference([100 * v for v in tml], [100 * v for v in plain])
    assert d.excludes_zero and f"**{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}]**" in text
    tie = paired_difference([100 * v for v in semi], [100 * v for v in plain])
    assert not tie.excludes_zero and f"| {tie.mean:+.2f} [{tie.low:+.2f}, {tie.high:+.2f}] |" in text
    assert "| `plain` | 15 | 750 | 0.820 · 0.830 · 0.810 | 0.820 | — |" in text  # what each side spent, recorded
    val = text.split("## Validation")[1]
    assert "Δ vs `tml`" in val and "0.8000 · 0.8100 · 0.8200" in val
    vd = paired_difference([1.0, -2.0, 0.0], [0.0, 0.0, 0.0])
    assert f"{vd.mean:+.2f} [{vd.low:+.2f}, {vd.high:+.2f}]" in val
    # a fold missing a side is left out of every table, never compared unpaired
    assert "folds 0 · 1 · 2 |" in ewt.report(rows + [_row("plain", 3, 0.9)], ["plain", "tml"], "t")
    with pytest.raises(ValueError, match="no fold has a result for every side"):
        ewt.report(rows[:1], ["plain", "tml"], "t")


def test_report_adds_the_plain_heads_arg_max_where_every_fold_has_it(ewt):
    from zoo.evaluate.paired import paired_difference

    plain, head = [0.82, 0.83, 0.81], [0.79, 0.81, 0.80]
    rows = ([{**_row("plain", f, v), "test_macro_f1_argmax": h} for f, (v, h) in enumerate(zip(plain, head))]
            + [_row("classifier", f, 0.78, val=0.78) for f in range(3)])
    text = ewt.report(rows, ["plain", "classifier"], "t")
    d = paired_difference([100 * v for v in head], [100 * v for v in plain])
    assert (f"| `plain`, its head's arg-max (no SVM) | ″ | ″ | 0.790 · 0.810 · 0.800 | 0.800 | "
            f"{'**' if d.excludes_zero else ''}{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}]") in text
    # rows written before the arg-max was recorded: no such line, nothing made up
    rows[0] = _row("plain", 0, 0.82)
    assert "arg-max" not in ewt.report(rows, ["plain", "classifier"], "t")


def test_runs_every_side_of_a_fold_at_once_and_keeps_finished_folds(ewt, tmp_path):
    """End to end on the tiny set: a plain side and a zoo side train a few seconds each in their own
    processes and stores; the zoo row carries the validation macro-F its MLflow run selected on; a
    second call with other sides refuses to mix them into the same rows."""
    from tiny_data import tiny_project

    out = tmp_path / "ewt"
    with tiny_project(tmp_path / "home"):
        args = ["--dataset", "tiny", "--folds", "0", "--minutes", "0.1", "--img-size", "32", "--out", str(out),
                "--sides", "plain", "tml:backbone=resnet10t,batch_size=8,num_workers=0"]
        assert ewt.main(args) == 0
        rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
        assert [r["side"] for r in rows] == ["plain", "tml:backbone=resnet10t,batch_size=8,num_workers=0"]
        zoo = rows[1]
        assert 0.0 <= zoo["val_macro_f1"] <= 1.0 and zoo["train_seconds"] > 0 and zoo["epochs"] >= 1
        assert (out / "tml_backbone_resnet10t_batch_size_8_num_workers_0.db").exists()  # a store per side
        report = (out / "report.md").read_text()
        # 2 sides on test plus the plain loop's own arg-max, 1 zoo side on validation
        assert report.count("| `") == 4 and "| `plain`, its head's arg-max (no SVM) |" in report
        assert 0.0 <= rows[0]["test_macro_f1_argmax"] <= 1.0
        before = (out / "rows.jsonl").read_text()
        assert ewt.main(args) == 0  # the fold is kept, not rerun
        assert (out / "rows.jsonl").read_text() == before
        with pytest.raises(SystemExit, match="fold 0 was run with sides"):
            ewt.main([*args[:-2], "plain", "guided"])
        assert (out / "rows.jsonl").read_text() == before


def test_the_plain_loops_head_logits_come_from_the_features_the_svm_sees():
    import numpy as np
    import torch

    spec = importlib.util.spec_from_file_location("plain_loop", REPO / "benchmarks" / "plain_loop.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    loop = mod.PlainLoop(3, seed=0)
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    feats, logits = loop.features(images, batch=2, logits=True)
    assert feats.shape == (5, 512) and logits.shape == (5, 3)
    # the same features either way (another batch size may pick another kernel: float rounding only)
    assert np.allclose(loop.features(images), feats, atol=1e-4)
    with torch.no_grad():                                              # the model's own forward, eval mode
        x = ((images.float() / 255 - mod.MEAN) / mod.STD).contiguous(memory_format=torch.channels_last)
        assert torch.allclose(torch.from_numpy(logits), loop.model.eval()(x), atol=1e-5)
