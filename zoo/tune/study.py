"""A tuning study, end to end: check everything, open the study, run this worker's trials,
report, register the best model as ``@candidate``.

```python
from zoo.tune.study import TuneRequest, run_study
res = run_study(TuneRequest(family="guided", trials=20, study="guided-synth",
                            storage="journal:studies/guided.log",
                            params={"epochs": "3", "img_size": "32", "limit": "600"}))
```

Everything a user can get wrong (trials=0, an unknown family, a space naming an unknown
parameter, a storage that cannot be opened, pruning with two objectives) is checked before the
first trial trains. Running the same request again continues the study: its trials add to those
already stored. Several workers (processes, or machines on PostgreSQL) run the same request at
once; each runs ``trials`` trials and has its own parent run.
"""

from __future__ import annotations

import json
import logging
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

log = logging.getLogger(__name__)

PRUNERS = ("none", "median", "hyperband")
OBJECTIVES = ("primary", "primary,mcs")
TARGETS = ("model", "svm")


@dataclass
class TuneRequest:
    family: str = ""
    trials: int | str = 20
    study: str | None = None
    storage: str | None = None
    space: Any = None
    objectives: str = "primary"          # "primary" | "primary,mcs" (multi-objective, Pareto front)
    pruner: str = "median"               # none | median | hyperband (single objective only)
    inner_trials: int | str = 40         # inner γ/C study size; 0 = keep the training's grid
    max_trials: int | str | None = None  # stop every worker once the study holds this many finished trials
    timeout: float | str | None = None   # seconds: start no new trial after this (Optuna's timeout)
    register: bool | str = True
    target: str = "model"                # model | svm (tune only γ/C of a registered model)
    model: str | None = None             # models:/zoo-guided/3 for target=svm
    seed: int | str = 0
    params: dict[str, Any] = field(default_factory=dict)   # common + family parameters (fixed)


@dataclass
class StudyReport:
    study_name: str
    storage: str
    parent_run_id: str
    n_complete: int
    n_pruned: int
    n_failed: int
    best: list[dict[str, Any]]           # best trial (single) or the Pareto front
    registered: str | None = None
    plots: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"study {self.study_name!r} on {self.storage}: {self.n_complete} complete, "
                 f"{self.n_pruned} pruned, {self.n_failed} failed (parent run {self.parent_run_id})"]
        title = "Pareto front" if len(self.best) > 1 or (self.best and len(self.best[0]["values"]) > 1) else "best"
        for b in self.best:
            lines.append(f"  {title}: trial {b['number']} values {b['values']} params {b['params']}")
        if self.registered:
            lines.append(f"  registered {self.registered} as @candidate")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# checks (all before any training)
# --------------------------------------------------------------------------------------------
def _int(name: str, value: Any, minimum: int, fix: str) -> int:
    try:
        out = float(value)
        if not out.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"parameter {name!r} needs a whole number, got {value!r}; {fix}") from None
    if out < minimum:
        raise ValueError(f"parameter {name!r} must be >= {minimum}, got {int(out)}; {fix}")
    return int(out)


def _bool(name: str, value: Any) -> bool:
    from zoo.families.params import parse_bool

    return parse_bool(name, value)


@dataclass
class Plan:
    """A checked request: everything resolved, nothing trained yet."""

    request: TuneRequest
    family_cls: Any
    family_obj: Any
    base_raw: dict[str, Any]
    overrides: dict[str, Any]
    storage_spec: Any
    study_name: str
    trials: int
    inner_trials: int
    max_trials: int | None
    timeout: float | None
    multi: bool
    pruner: str
    seed: int
    register: bool


def plan(req: TuneRequest) -> Plan:
    from zoo.families import FAMILIES
    from zoo.families.params import resolve_config
    from zoo.tune.spaces import Fixed, check_names, fixed_values, load_space, probe_space
    from zoo.tune.storage import parse_storage

    trials = _int("trials", req.trials, 1, "e.g. -P trials=20 (trials this worker adds to the study)")
    inner = _int("inner_trials", req.inner_trials, 0, "e.g. -P inner_trials=40, or 0 to keep the fixed γ/C grid")
    max_trials = None if req.max_trials in (None, "", "none") else _int(
        "max_trials", req.max_trials, 1, "or leave it unset to let each worker run its trials")
    timeout = None if req.timeout in (None, "", "none") else float(_int(
        "timeout", req.timeout, 1, "seconds after which no new trial starts, e.g. -P timeout=600"))
    seed = _int("seed", req.seed if req.seed not in (None, "") else 0, 0, "e.g. -P seed=0")
    target = str(req.target or "model").strip()
    if target not in TARGETS:
        raise ValueError(f"parameter 'target' must be one of {', '.join(TARGETS)}, got {req.target!r}")
    objectives = str(req.objectives or "primary").replace(" ", "")
    if objectives not in OBJECTIVES:
        raise ValueError(f"parameter 'objectives' must be 'primary' or 'primary,mcs' (multi-objective: macro-F up, "
                         f"MCS down), got {req.objectives!r}")
    multi = objectives == "primary,mcs"
    pruner = str(req.pruner or "none").strip().lower()
    if pruner not in PRUNERS:
        raise ValueError(f"parameter 'pruner' must be one of {', '.join(PRUNERS)}, got {req.pruner!r}")
    if multi and pruner != "none":
        raise ValueError("pruning needs a single objective (Optuna cannot prune multi-objective trials): pass "
                         "-P pruner=none with -P objectives=primary,mcs, or drop objectives")

    fam_cls = FAMILIES.get(str(req.family))  # unknown family: lists the valid ones
    multi_ok = bool(getattr(fam_cls, "has_classes", True))
    if multi and not multi_ok:
        raise ValueError(f"family {req.family!r} has no classes, so no MCS: use -P objectives=primary")
    overrides = load_space(req.space)
    raw = {k: v for k, v in (req.params or {}).items() if v is not None}
    fold = str(raw.get("fold", "0")).strip().lower()
    if fold in ("all", "final"):
        raise ValueError(f"tuning trains one fold per trial and selects on its validation fold; got fold={fold!r}. "
                         "Pass -P fold=0 (or another fold number)")
    names = fam_cls.param_names() if callable(getattr(fam_cls, "param_names", None)) else fam_cls.param_names
    cfg = resolve_config(str(req.family), {**raw, "register": "false"}, names)  # bad values fail here
    fam = fam_cls(cfg)
    from zoo.families.runner import load_dataset

    # a missing dataset names `zoo data ingest` (synth is built); target=svm uses the model's own data
    dataset_obj = load_dataset(cfg.dataset) if target == "model" else None
    if dataset_obj is not None and isinstance(cfg.fold, int) and not 0 <= cfg.fold < dataset_obj.n_folds:
        raise ValueError(f"fold {cfg.fold} does not exist: dataset {dataset_obj.name!r} has {dataset_obj.n_folds} "
                         f"folds (use -P fold=0..{dataset_obj.n_folds - 1})")
    searched = probe_space(fam.search_space, overrides, seed=seed) if target == "model" else {}
    from zoo.families.params import COMMON_NAMES

    check_names(overrides, searched, set(names) | set(COMMON_NAMES), str(req.family))
    if fixed_values(overrides):  # the YAML's fixed values must parse too, before any training
        raw.update(fixed_values(overrides))
        fam = fam_cls(resolve_config(str(req.family), {**raw, "register": "false"}, names))
    # a searched parameter given explicitly (-P loss=inverse_umap, --lr 0.001) is fixed, not searched;
    # "auto"/"none" leave it to the search
    for key, value in list(raw.items()):
        if key in searched and key not in overrides and str(value).strip().lower() not in ("", "auto", "none"):
            overrides[key] = Fixed(value)
    spec = parse_storage(req.storage)
    dataset = getattr(cfg, "dataset", "synth")
    study_name = str(req.study).strip() if req.study not in (None, "", "none") else f"{req.family}-{dataset}"
    if target == "svm":
        study_name = str(req.study).strip() if req.study not in (None, "", "none") else f"{req.family}-svm"
    register = _bool("register", req.register if req.register is not None else True)
    return Plan(req, fam_cls, fam, raw, overrides, spec, study_name, trials, inner, max_trials, timeout, multi, pruner,
                seed, register)


def make_pruner(name: str):
    import optuna

    if name == "median":
        # the first trials always finish, and no verdict before the 2nd epoch
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)  # epochs count from 1
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    return optuna.pruners.NopPruner()


def _worker_seed(seed: int, worker: str) -> int:
    """Workers of one study must not draw the same first points: the seed is mixed with the worker id."""
    return (seed * 1_000_003 + zlib.crc32(worker.encode())) % (2**31)


# --------------------------------------------------------------------------------------------
# the study
# --------------------------------------------------------------------------------------------
def open_study(p: Plan, on_stale=None, heartbeat_interval: int | None = None, grace_period: int | None = None):
    import optuna

    from zoo.tune import storage as st
    from zoo.tune.storage import worker_id

    kw = {}
    if heartbeat_interval is not None:
        kw["heartbeat_interval"] = heartbeat_interval
    if grace_period is not None:
        kw["grace_period"] = grace_period
    storage = st.open_storage(p.storage_spec, on_stale=on_stale, **kw)
    primary = p.family_cls.primary_metric or "macro_f1"
    directions = [p.family_cls.direction or "maximize"] + (["minimize"] if p.multi else [])
    study = optuna.create_study(
        study_name=p.study_name, storage=storage, load_if_exists=True, directions=directions,
        sampler=optuna.samplers.TPESampler(seed=_worker_seed(p.seed, worker_id())),
        pruner=make_pruner(p.pruner))
    if [d.name.lower() for d in study.directions] != directions:
        raise ValueError(f"study {p.study_name!r} already exists with directions "
                         f"{[d.name.lower() for d in study.directions]}, not {directions}: "
                         "pick another -P study=<name>")
    stored = study.user_attrs.get("family")
    if stored is None:
        study.set_user_attr("family", p.request.family)
        study.set_user_attr("primary_metric", primary)
        study.set_user_attr("fixed_params", json.dumps(p.base_raw, sort_keys=True, default=str))
        study.set_user_attr("objectives", ["val_" + primary] + (["val_mcs"] if p.multi else []))
    elif stored != p.request.family:
        raise ValueError(f"study {p.study_name!r} tunes family {stored!r}, not {p.request.family!r}: pick another "
                         "-P study=<name>")
    elif study.user_attrs.get("fixed_params") != json.dumps(p.base_raw, sort_keys=True, default=str):
        log.warning("study %r was started with fixed parameters %s; this worker fixes %s — its trials are "
                    "not comparable to the earlier ones", p.study_name, study.user_attrs.get("fixed_params"),
                    json.dumps(p.base_raw, sort_keys=True, default=str))
    return study


def run_study(req: TuneRequest, *, train: Callable | None = None, heartbeat_interval: int | None = None,
              grace_period: int | None = None) -> StudyReport:
    """Run this worker's share of the study. ``train`` defaults to
    :func:`zoo.families.runner.run_training` (the benchmark passes it explicitly)."""
    import optuna

    from zoo.tune.mlflow_nesting import StudyRuns, mark_dead
    from zoo.tune.objective import TrialObjective, objective_names
    from zoo.tune.storage import fail_dead_local_trials, worker_id

    p = plan(req)
    if p.request.target == "svm":
        from zoo.tune.svm_target import tune_registered_svm

        return tune_registered_svm(p)
    study = open_study(p, on_stale=mark_dead, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    worker = worker_id()
    primary = p.family_cls.primary_metric or "macro_f1"
    runs = StudyRuns(p.study_name, p.request.family, worker=worker, storage=p.storage_spec.display,
                     params={"trials": p.trials, "inner_trials": p.inner_trials, "pruner": p.pruner,
                             "objectives": p.request.objectives, **p.base_raw})
    before = None
    if not p.storage_spec.has_heartbeat:
        def before() -> None:
            fail_dead_local_trials(study, on_stale=mark_dead)
        before()
    objective = TrialObjective(p.request.family, p.family_obj, p.base_raw, p.overrides, runs=runs, primary=primary,
                               direction=p.family_cls.direction or "maximize", multi=p.multi,
                               pruning=p.pruner != "none", inner_trials=p.inner_trials, seed=p.seed,
                               train=train, before_trial=before)
    callbacks = []
    if p.max_trials:
        callbacks.append(optuna.study.MaxTrialsCallback(
            p.max_trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)))
    status = "FAILED"
    _sigterm_as_interrupt()
    try:
        # catch=Exception: a trial that raises is recorded FAIL (its error in user attrs and in its
        # child run) and the study goes on; Ctrl-C still stops the worker.
        study.optimize(objective, n_trials=p.trials, timeout=p.timeout, catch=(Exception,), callbacks=callbacks,
                       gc_after_trial=True)
        report = summarise(study, p, runs, objective_names(primary, p.multi))
        status = "FINISHED"
        return report
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        runs.finish(status)


def _sigterm_as_interrupt() -> None:
    """A worker stopped by SIGTERM (a scheduler, ``kill``) ends like Ctrl-C: its trial is marked
    failed in the study and its child run KILLED, instead of waiting for a heartbeat check."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def summarise(study, p: Plan, runs, names: list[str]) -> StudyReport:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    count = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    best_trials = study.best_trials if p.multi else ([study.best_trial] if count[TrialState.COMPLETE] else [])
    best = [{"number": t.number, "values": list(t.values), "params": dict(t.params),
             "svm_gamma": t.user_attrs.get("svm_gamma"), "svm_C": t.user_attrs.get("svm_C"),
             "run_id": t.user_attrs.get("mlflow_run_id"),
             **{k: v for k, v in t.user_attrs.items() if k.startswith("test_")}} for t in best_trials]
    metrics = {"n_trials_complete": count[TrialState.COMPLETE], "n_trials_pruned": count[TrialState.PRUNED],
               "n_trials_failed": count[TrialState.FAIL]}
    if best and not p.multi:
        metrics[f"best_{names[0]}"] = best[0]["values"][0]
    runs.log_summary(study, metrics, {"study": p.study_name, "objectives": names, "directions":
                                      [d.name.lower() for d in study.directions], "best" if not p.multi else
                                      "pareto_front": best})
    plots = runs.log_plots(study, names)
    registered = None
    if p.register and best:
        # multi-objective: the Pareto trial best on the primary metric
        sign = 1 if (p.family_cls.direction or "maximize") == "maximize" else -1
        chosen = max(best, key=lambda b: sign * b["values"][0])
        registered = register_best(study, p, chosen)
    if registered:
        runs.set_tags(runs.parent_id, {"registered_version": registered})
    return StudyReport(p.study_name, p.storage_spec.display, runs.parent_id, count[TrialState.COMPLETE],
                       count[TrialState.PRUNED], count[TrialState.FAIL], best, registered, plots)


def register_best(study, p: Plan, best: Mapping[str, Any]) -> str | None:
    """Register the best trial's model as ``zoo-<family>@candidate`` with the study in its tags —
    once per best trial, however many workers finish (the study remembers what it registered)."""
    from zoo.tracking.registry import register

    trial = study.trials[best["number"]]
    model_uri, run_id = trial.user_attrs.get("model_uri"), trial.user_attrs.get("mlflow_run_id")
    if not model_uri or not run_id:
        log.warning("best trial %d has no logged model: nothing registered", trial.number)
        return None
    done = study.user_attrs.get("registered", {})
    if str(trial.number) in done:
        return done[str(trial.number)]
    tags = {**trial.user_attrs.get("version_tags", {}),
            "study": p.study_name, "trial_number": str(trial.number), "tuned_by": "optuna",
            "objective": json.dumps(dict(zip(study.user_attrs.get("objectives", []), best["values"])))}
    for key in ("svm_gamma", "svm_C"):
        if trial.user_attrs.get(key) is not None:
            tags[key] = repr(float(trial.user_attrs[key]))
    mv = register(run_id, p.request.family, model_uri, tags=tags)
    name = f"{mv.name}/{mv.version}"
    study.set_user_attr("registered", {**done, str(trial.number): name})
    return name

