"""Equal wall time over CV folds: the plain loop and zoo sides, side by side, with paired intervals.

The protocol behind the README's PBC tables (issue 8), as one command. For every fold, each side
runs in its own process (``benchmarks/plain_loop.py``, 1 thread each) *at the same time*, so the
sides share the machine's load alike; each side has its own MLflow store (SQLite) under ``--out``,
so no two processes write one database. Then it writes ``--out``/report.md:

* test macro-F per fold and side, and each side's paired 95 % t interval against the plain loop;
* the validation macro-F at the epoch each zoo run selected, and each zoo side's paired interval
  against the first zoo side (the reference: the default). Choices between zoo settings are made
  on this table, never on the test one (a setting chosen on test folds is a leak).

A side is ``plain``, ``plain:fused`` or ``FAMILY[:k=v,k=v]``, e.g.::

    python benchmarks/equal_wall_time.py --dataset pbc10 --folds 0-5 --minutes 12 \\
        --sides plain tml tml:ce_on=both tml:type_of_triplets=semihard --out outputs/ewt_pbc

(prepare the dataset first: ``zoo data ingest ../shared/data/pbc --name pbc10 --reader pbc
--n-folds 6 --classes ...``). Finished folds are kept in ``--out``/rows.jsonl and skipped when the
command is run again, so an interrupted run resumes at the fold it lost.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parse_side(spec: str) -> dict:
    """``plain`` | ``plain:fused`` | ``FAMILY[:k=v,...]`` -> {"label", "family", "params"}."""
    name, _, rest = spec.partition(":")
    if not name:
        raise ValueError(f"side {spec!r}: give plain, plain:fused or FAMILY[:k=v,k=v]")
    if name == "plain":
        if rest not in ("", "fused"):
            raise ValueError(f"side {spec!r}: the plain loop takes only ':fused'")
        return {"label": spec, "family": None, "params": rest}
    from zoo.families import FAMILIES

    if name not in FAMILIES.names():
        raise ValueError(f"side {spec!r}: unknown family {name!r}; valid: plain, {', '.join(FAMILIES.names())}")
    bad = [kv for kv in rest.split(",") if kv and "=" not in kv]
    if bad:
        raise ValueError(f"side {spec!r}: parameters must be k=v, got {bad}")
    return {"label": spec, "family": name, "params": rest}


def parse_folds(text: str) -> list[int]:
    """``0-5`` or ``0,2,4``."""
    if "-" in text:
        lo, hi = (int(t) for t in text.split("-", 1))
        return list(range(lo, hi + 1))
    return [int(t) for t in text.split(",") if t]


def side_command(side: dict, dataset: str, fold: int, minutes: float, seed: int, img_size: int,
                 precision: str = "auto") -> list[str]:
    cmd = [sys.executable, str(HERE / "plain_loop.py"), "--dataset", dataset, "--fold", str(fold),
           "--minutes", f"{minutes:g}", "--threads", "1", "--seed", str(seed), "--img-size", str(img_size),
           "--precision", precision]
    if side["family"] is None:
        return cmd + ["--families", ""] + (["--fused"] if side["params"] == "fused" else [])
    return cmd + ["--no-plain", "--families", side["family"]] + (["--zoo-params", side["params"]]
                                                                  if side["params"] else [])


def store_uri(out: Path, side: dict) -> str:
    safe = "".join(ch if ch.isalnum() else "_" for ch in side["label"])
    return f"sqlite:///{(out / f'{safe}.db').resolve()}"


def validation_of(run_id: str, uri: str) -> tuple[float | None, dict]:
    """The validation macro-F the run selected its epoch on, and where its time went."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    m = client.get_run(run_id).data.metrics
    train = sum(x.value for x in client.get_metric_history(run_id, "train_seconds"))
    return m.get("best_val_macro_f1"), {"train_seconds": train, "best_epoch": m.get("best_epoch")}


def run_fold(sides: list[dict], args, fold: int, out: Path) -> list[dict]:
    procs = []
    for side in sides:
        log = open(out / f"{side['label'].replace(':', '_').replace('=', '-').replace(',', '_')}_{fold}.log", "w")
        env = {**os.environ, "MLFLOW_TRACKING_URI": store_uri(out, side)}
        procs.append((side, subprocess.Popen(side_command(side, args.dataset, fold, args.minutes, args.seed,
                                                          args.img_size, args.precision), stdout=subprocess.PIPE,
                                             stderr=log, text=True, env=env), log))
    rows = []
    for side, proc, log in procs:
        stdout, _ = proc.communicate()
        log.close()
        found = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not found:
            raise RuntimeError(f"side {side['label']} on fold {fold} failed (exit {proc.returncode}); "
                               f"its log: {log.name}")
        row = {"side": side["label"], "fold": fold, **found[-1]}
        if side["family"] is not None:
            row["val_macro_f1"], extra = validation_of(row["run_id"], store_uri(out, side))
            row.update(extra)
        rows.append(row)
    return rows


def _interval(cand: list[float], base: list[float]) -> str:
    from zoo.evaluate.paired import paired_difference

    d = paired_difference([100 * c for c in cand], [100 * b for b in base])
    if not math.isfinite(d.low):
        return f"{d.mean:+.2f} (one fold: no interval)"
    text = f"{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}]"
    return f"**{text}**" if d.excludes_zero else text


def _span(values: list[float], fmt: str) -> str:
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if lo == hi else f"{lo}–{hi}"


def report(rows: list[dict], sides: list[str], title: str) -> str:
    """Markdown: test macro-F against the plain loop, validation against the first zoo side."""
    by = {(r["side"], r["fold"]): r for r in rows}
    folds = sorted({r["fold"] for r in rows if all((s, r["fold"]) in by for s in sides)})
    if not folds:
        raise ValueError("no fold has a result for every side yet")
    head = " · ".join(str(f) for f in folds)
    lines = [f"# {title}", "", f"Folds {head}; paired 95 % t intervals over them, in percentage points; "
             "bold: the interval excludes 0.", "",
             "## Test macro-F", "", "Epochs: the plain loop's last one is partial (it trains until its minutes end). "
             "End to end: the side's whole process, start-up and test scoring included.", "",
             f"| side | epochs | end to end s | folds {head} | mean | Δ vs plain (pp) |", "|---|---|---|---|---|---|"]
    plain = next((s for s in sides if s.split(":")[0] == "plain"), None)
    for s in sides:
        vals = [by[(s, f)]["test_macro_f1"] for f in folds]
        epochs = [by[(s, f)]["epochs"] for f in folds]
        wall = [by[(s, f)]["wall_seconds"] for f in folds]
        delta = "—" if s == plain or plain is None else _interval(
            vals, [by[(plain, f)]["test_macro_f1"] for f in folds])
        lines.append(f"| `{s}` | {_span(epochs, '{:g}')} | {_span(wall, '{:.0f}')} | "
                     f"{' · '.join(f'{v:.3f}' for v in vals)} | {sum(vals) / len(vals):.3f} | {delta} |")
        if s == plain and all("test_macro_f1_argmax" in by[(s, f)] for f in folds):
            # The same run's head, arg-max without the SVM: what a softmax classifier is compared with.
            head_vals = [by[(s, f)]["test_macro_f1_argmax"] for f in folds]
            lines.append(f"| `{s}`, its head's arg-max (no SVM) | ″ | ″ | "
                         f"{' · '.join(f'{v:.3f}' for v in head_vals)} | {sum(head_vals) / len(head_vals):.3f} | "
                         f"{_interval(head_vals, vals)} |")
    zoo_sides = [s for s in sides if s.split(":")[0] != "plain"]
    if zoo_sides:
        ref = zoo_sides[0]
        lines += ["", "## Validation macro-F at the selected epoch (choices are made here)", "",
                  f"| side | folds {head} | mean | Δ vs `{ref}` (pp) | training s |", "|---|---|---|---|---|"]
        for s in zoo_sides:
            vals = [by[(s, f)]["val_macro_f1"] for f in folds]
            train = [by[(s, f)].get("train_seconds", float("nan")) for f in folds]
            delta = "—" if s == ref else _interval(vals, [by[(ref, f)]["val_macro_f1"] for f in folds])
            lines.append(f"| `{s}` | {' · '.join(f'{v:.4f}' for v in vals)} | {sum(vals) / len(vals):.4f} | "
                         f"{delta} | {_span(train, '{:.0f}')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="pbc10")
    ap.add_argument("--folds", default="0-5", help="0-5 or 0,2,4")
    ap.add_argument("--minutes", type=float, default=12.0, help="training wall time of every side")
    ap.add_argument("--sides", nargs="+", default=["plain", "tml", "guided"],
                    help="plain | plain:fused | FAMILY[:k=v,k=v]; the first zoo side is the reference")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                    help="of every side (fp32 on a bf16 CPU reproduces the regime of a CPU without bf16)")
    ap.add_argument("--out", type=Path, required=True, help="directory for stores, logs, rows.jsonl, report.md")
    args = ap.parse_args(argv)
    sides = [parse_side(s) for s in args.sides]
    args.out.mkdir(parents=True, exist_ok=True)
    rows_file = args.out / "rows.jsonl"
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()] if rows_file.exists() else []
    labels = [s["label"] for s in sides]
    done = {r["fold"] for r in rows}
    for fold in sorted(done):
        have = sorted(r["side"] for r in rows if r["fold"] == fold)
        if have != sorted(labels):
            raise SystemExit(f"{rows_file}: fold {fold} was run with sides {have}, not {sorted(labels)}; "
                             "give another --out for other sides (results are never mixed or overwritten)")
    for fold in parse_folds(args.folds):
        if fold in done:
            print(f"fold {fold}: in {rows_file}, skipped", flush=True)
            continue
        start = time.perf_counter()
        print(f"fold {fold}: {len(sides)} sides at once, {args.minutes:g} min each ...", flush=True)
        new = run_fold(sides, args, fold, args.out)
        with rows_file.open("a") as fh:  # a fold lands whole or not at all
            fh.write("".join(json.dumps(r) + "\n" for r in new))
        rows += new
        print(f"fold {fold}: done in {time.perf_counter() - start:.0f} s: " +
              ", ".join(f"{r['side']} {r['test_macro_f1']:.4f}" for r in new), flush=True)
    text = report(rows, labels,
                  f"Equal wall time on {args.dataset}: {args.minutes:g} minutes of training per side"
                  + ("" if args.precision == "auto" else f", precision {args.precision}"))
    (args.out / "report.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
