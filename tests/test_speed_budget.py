"""Time budget, val_every and the epoch split of the Trainer (a controlled clock, no sleeping)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from zoo.evaluate import SVMStage
from zoo.losses import create_loss
from zoo.models import create_encoder
from zoo.train import Callback, Trainer, seed_everything
from zoo.train.budget import TimeBudget, cosine_factor


class Clock:
    """Wall time that moves only when a batch ends (10 s each)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Tick(Callback):
    def __init__(self, clock, seconds):
        self.clock, self.seconds = clock, seconds

    def on_batch_end(self, trainer, epoch, batch, loss):
        self.clock.now += self.seconds


def data(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.rand(n, 3, 32, 32, generator=g) * 0.4
    x[torch.arange(n), y] += 0.6
    return TensorDataset(x, y)


def trainer(epochs=10, **kw):
    torch.set_num_threads(1)
    seed_everything(0)
    train = data()
    return Trainer(create_encoder("test_resnet", embedding_dim=8), create_loss("triplet"),
                   DataLoader(train, batch_size=8, shuffle=True), DataLoader(data(12, 1), batch_size=12),
                   train_eval_loader=DataLoader(train, batch_size=24), epochs=epochs, patience=None,
                   svm=SVMStage(gammas=("scale",), Cs=(1.0,), cv=2), progress=False, **kw)


def test_budget_stops_before_an_epoch_that_would_not_fit_and_the_cosine_spans_it():
    clock = Clock()
    # 3 batches x 10 s = 30 s per epoch; 65 s fit two epochs, not a third
    t = trainer(budget=TimeBudget(65 / 60, clock=clock), callbacks=[Tick(clock, 10.0)])
    result = t.fit()
    assert result.epochs_run == 2 and result.stopped_on_budget and not result.stopped_early
    assert result.history[-1]["stopped_on_budget"] == 1.0 and result.history[-1]["validated"] == 1.0
    assert "val_macro_f1" in result.history[-1]  # the last epoch is validated before stopping
    lrs = [r["lr"] for r in result.history]
    # the schedule follows the budget (2 of 10 epochs, yet the lr has decayed past half of its start)
    assert lrs[0] == pytest.approx(1e-3) and lrs[1] == pytest.approx(1e-3 * cosine_factor(30 / 65), rel=1e-6)


def test_no_budget_runs_every_epoch():
    result = trainer(epochs=2).fit()
    assert result.epochs_run == 2 and not result.stopped_on_budget


def test_val_every_skips_validation_but_validates_the_last_epoch_and_logs_the_split():
    result = trainer(epochs=3, val_every=2).fit()
    assert [r["validated"] for r in result.history] == [0.0, 1.0, 1.0]
    assert "val_macro_f1" not in result.history[0] and result.best_epoch in (2, 3)
    for key in ("train_seconds", "embed_seconds", "svm_seconds", "guide_seconds", "epoch_seconds"):
        assert key in result.history[-1], key


def test_svm_train_max_embeds_a_fixed_stratified_subsample():
    seen = []

    class Look(Callback):
        def on_epoch_end(self, trainer, epoch, metrics):
            seen.append(trainer.train_embeddings()[1])

    trainer(epochs=2, svm_train_max=12, callbacks=[Look()]).fit()
    assert len(seen[0]) == 12 and sorted(torch.bincount(torch.as_tensor(seen[0])).tolist()) == [4, 4, 4]
    assert (seen[0] == seen[1]).all()


def test_time_budget_contract():
    clock = Clock()
    b = TimeBudget(1.0, clock=clock)
    b.start()
    clock.now = 20.0
    b.record(20.0, 5.0)
    assert b.another_epoch_fits() and b.next_epoch_cost() == 25.0  # 40 s left - 5 s validation >= 25 s
    clock.now = 40.0
    assert not b.another_epoch_fits()
    state = b.state_dict()
    resumed = TimeBudget(1.0, clock=clock)
    resumed.load_state_dict(state)
    resumed.start()
    assert resumed.elapsed == pytest.approx(40.0)  # a resume gets what is left, not a fresh budget
    with pytest.raises(ValueError, match="positive number of minutes"):
        TimeBudget(0)


def costly_validation(t, clock, seconds=15.0):
    validate = t._validate

    def costly(epoch):
        clock.now += seconds
        return validate(epoch)

    t._validate = costly


def test_adaptive_val_every_spaces_costly_validations_to_a_tenth_of_training_and_always_validates_the_last():
    clock = Clock()
    # select_from=0: spacing only. 15 s of validation beside 30 s of training: every 15 / 3 = 5 epochs
    t = trainer(epochs=12, budget=TimeBudget(100, clock=clock, select_from=0.0), callbacks=[Tick(clock, 10.0)],
                val_every="adaptive")
    costly_validation(t, clock)
    result = t.fit()
    assert [int(r["epoch"]) for r in result.history if r["validated"]] == [1, 6, 11, 12]
    assert result.history[0]["val_interval"] == 5.0


def test_adaptive_val_every_validates_once_early_then_only_in_the_last_quarter_of_the_budget():
    clock = Clock()
    # 10 minutes, 30 s epochs, 15 s validations (interval 5). Epoch 1 ends validated at 45 s; epoch k
    # ends at 45 + 30 (k - 1) s, so 3/4 of the budget (450 s) is first passed after epoch 15
    # (465 s): validated (480 s). Epoch 18 ends at 570 s, when another epoch and its validation
    # (45 s) no longer fit beside this one's validation: validated, stopped on budget.
    t = trainer(epochs=1000, budget=TimeBudget(10, clock=clock), callbacks=[Tick(clock, 10.0)], val_every="adaptive")
    costly_validation(t, clock)
    result = t.fit()
    assert [int(r["epoch"]) for r in result.history if r["validated"]] == [1, 15, 18]
    assert result.stopped_on_budget and result.epochs_run == 18
    # gamma/C: the early validation refits the default pair; the first of the selection phase searches
    assert [int(r["epoch"]) for r in result.history if r.get("svm_searched")] == [15]
    assert result.best_epoch in (1, 15, 18)


def test_the_stop_rule_reserves_this_epochs_validation_only_when_it_will_run():
    """9.75 minutes: after epoch 17 (540 s; not a validation epoch) 45 s are left, exactly another
    epoch and its validation. Reserving a validation for epoch 17 as well would stop there; the run
    trains epoch 18 instead, validates it and still ends inside the budget."""
    clock = Clock()
    t = trainer(epochs=1000, budget=TimeBudget(9.75, clock=clock), callbacks=[Tick(clock, 10.0)],
                val_every="adaptive")
    costly_validation(t, clock)
    result = t.fit()
    assert result.epochs_run == 18 and result.stopped_on_budget
    assert [int(r["epoch"]) for r in result.history if r["validated"]] == [1, 15, 18]
    assert clock.now <= 9.75 * 60


class SlowSearch(SVMStage):
    """An SVM stage whose grid search costs 10 s of the test clock (and says so in fit_seconds_)."""

    clock: Clock | None = None

    def fit(self, X, y):
        super().fit(X, y)
        SlowSearch.clock.now += 10.0
        self.fit_seconds_ += 10.0
        return self


def test_the_stop_rule_charges_the_svm_grid_search_only_to_a_validation_that_will_search():
    """5 minutes, 30 s epochs, every epoch validated: 5 s to embed, +10 s when gamma/C are searched
    (svm_every=5: epochs 1 and 6). Epoch 6 ends at 230 s, epoch 7's training at 260 s; its
    validation (a refit, 5 s) and another epoch (35 s) fit in the 40 s left. Charging them the 15 s
    of epoch 6's search-validation would stop after epoch 7 with 35 s unused."""
    clock = Clock()
    SlowSearch.clock = clock
    seed_everything(0)
    train = data()
    t = Trainer(create_encoder("test_resnet", embedding_dim=8), create_loss("triplet"),
                DataLoader(train, batch_size=8, shuffle=True), DataLoader(data(12, 1), batch_size=12),
                train_eval_loader=DataLoader(train, batch_size=24), epochs=1000, patience=None,
                svm=SlowSearch(gammas=("scale",), Cs=(1.0,), cv=2), progress=False, svm_every=5,
                budget=TimeBudget(5, clock=clock), callbacks=[Tick(clock, 10.0)])
    costly_validation(t, clock, seconds=5.0)
    result = t.fit()
    assert [int(r["epoch"]) for r in result.history if r.get("svm_searched")] == [1, 6]
    assert result.epochs_run == 8 and result.stopped_on_budget
    assert clock.now == pytest.approx(300.0)  # the budget is spent, not exceeded
    # what the budget expects of the next validation: 5 s after a refit, 5 s after a search too
    # (the next one refits), so the search's 10 s are never charged to a refit
    assert t.budget.val_time == pytest.approx(5.0, abs=0.5)


def test_validation_due_measures_first_then_waits_for_select_from():
    clock = Clock()
    b = TimeBudget(1.0, clock=clock, select_from=0.5)
    b.start()
    assert b.validation_due(1, next_val=1)  # cost unknown: validate now
    b.record(10.0, 5.0)
    clock.now = 20.0
    assert not b.validation_due(4, next_val=2)  # a third of the budget spent
    clock.now = 31.0
    assert b.validation_due(4, next_val=2) and not b.validation_due(4, next_val=5)
    with pytest.raises(ValueError, match="select_from"):
        TimeBudget(1.0, select_from=1.5)


def test_adaptive_val_every_without_a_budget_validates_every_epoch():
    result = trainer(epochs=3, val_every="adaptive").fit()
    assert [r["validated"] for r in result.history] == [1.0, 1.0, 1.0]


def test_validation_interval_follows_the_cost_ratio_within_bounds():
    b = TimeBudget(10)
    assert b.validation_interval() == 1  # nothing measured yet
    b.train_times, b.val_time = [10.0, 12.0, 10.0], 3.0
    assert b.validation_interval() == 3
    b.val_time = 0.4
    assert b.validation_interval() == 1
    b.val_time = 500.0
    assert b.validation_interval() == 8


def test_val_every_parameter_takes_adaptive_or_a_count():
    from zoo.families.params import resolve_config

    assert resolve_config("tml", {}).val_every == "adaptive"  # the cpu preset
    assert resolve_config("tml", {"preset": "paper"}).val_every == 1
    assert resolve_config("tml", {"val_every": "3"}).val_every == 3
    with pytest.raises(ValueError, match="'adaptive'"):
        resolve_config("tml", {"val_every": "often"})


class ClockedSVM(SVMStage):
    """An SVM stage on the test clock: a final fit (what a refit costs) takes 1 s, a grid search 8 s more."""

    clock: Clock | None = None

    def _fit_final(self, X, y, counts):
        super()._fit_final(X, y, counts)
        ClockedSVM.clock.now += 1.0
        self.final_fit_seconds_ = 1.0

    def fit(self, X, y):
        super().fit(X, y)
        ClockedSVM.clock.now += 8.0
        self.fit_seconds_ = 9.0
        return self


def test_the_early_adaptive_validation_refits_the_default_pair_and_the_stop_rule_charges_the_search_to_come():
    """105 s, 30 s epochs, 5 s to embed. Epoch 1 validates without a search (default gamma/C, 1 s):
    36 s. The selection phase's first validation will search (8 s more), so after epoch 2 (66 s) the
    next epoch and that validation (30 + 5 + 1 + 8 s) do not fit in the 39 s left: the run stops
    and validates epoch 2 (72 s). Charging nothing for the search (it was never measured) would
    train epoch 3 and end its searching validation at 110 s, over the budget."""
    clock = Clock()
    ClockedSVM.clock = clock
    seed_everything(0)
    train = data()
    svm = ClockedSVM(gammas=("scale", 0.1), Cs=(1.0, 10.0), cv=2)
    t = Trainer(create_encoder("test_resnet", embedding_dim=8), create_loss("triplet"),
                DataLoader(train, batch_size=8, shuffle=True), DataLoader(data(12, 1), batch_size=12),
                train_eval_loader=DataLoader(train, batch_size=24), epochs=1000, patience=None, svm=svm,
                progress=False, budget=TimeBudget(105 / 60, clock=clock), callbacks=[Tick(clock, 10.0)],
                val_every="adaptive")
    costly_validation(t, clock, seconds=5.0)
    result = t.fit()
    first = result.history[0]
    assert first["validated"] == 1.0 and first["svm_searched"] == 0.0
    assert first["svm_C"] == 1.0 and "svm_cv_score" not in first  # sklearn's default pair, no search
    assert svm.default_params() == {"gamma": "scale", "C": 1.0}
    assert result.epochs_run == 2 and result.stopped_on_budget
    assert clock.now == pytest.approx(72.0) and clock.now <= 105.0
    # the estimate: 4 candidates x 2 folds x the 1 s final fit
    assert t._search_seconds == pytest.approx(8.0)


def test_a_resumed_budgeted_run_keeps_the_search_estimate_and_whether_the_late_search_ran(tmp_path):
    clock = Clock()

    def run(resume):
        seed_everything(0)
        train = data()
        t = Trainer(create_encoder("test_resnet", embedding_dim=8), create_loss("triplet"),
                    DataLoader(train, batch_size=8, shuffle=True), DataLoader(data(12, 1), batch_size=12),
                    train_eval_loader=DataLoader(train, batch_size=24), epochs=1000, patience=None,
                    svm=SVMStage(gammas=("scale", 0.1), Cs=(1.0, 10.0), cv=2), progress=False,
                    budget=TimeBudget(105 / 60, clock=clock), callbacks=[Tick(clock, 10.0)],
                    val_every="adaptive", checkpoint_dir=tmp_path, resume=resume)
        return t

    first = run(False)
    first.fit()
    resumed = run(True)
    resumed._load_last()
    # the run reached the selection phase: its search was timed (not the estimate) and is not redone
    assert first._late_search_done and first._search_seconds > 0
    assert resumed._late_search_done and resumed._search_seconds == first._search_seconds


def test_the_budget_trains_a_shortened_last_epoch_with_what_fits_and_ends_inside_it():
    """80 s, 3 batches x 10 s per epoch: after epoch 2 (60 s) a whole epoch no longer fits, but two of
    its three steps do. With ``last_epoch_min`` the run trains them as epoch 3, validates it and ends at
    80 s; by default it stops before that epoch and leaves 20 s of the budget unused."""
    clock = Clock()
    t = trainer(budget=TimeBudget(80 / 60, clock=clock, last_epoch_min=0.2), callbacks=[Tick(clock, 10.0)])
    result = t.fit()
    assert result.epochs_run == 3 and result.stopped_on_budget
    last = result.history[-1]
    assert last["epoch_fraction"] == pytest.approx(2 / 3) and last["validated"] == 1.0 and "val_macro_f1" in last
    assert "epoch_fraction" not in result.history[1]  # whole epochs say nothing
    assert clock.now == pytest.approx(80.0)  # the budget is spent, not exceeded
    assert t.global_step == 8  # 3 + 3 + 2 optimiser steps

    clock = Clock()
    whole = trainer(budget=TimeBudget(80 / 60, clock=clock), callbacks=[Tick(clock, 10.0)]).fit()
    assert whole.epochs_run == 2 and whole.stopped_on_budget and clock.now == pytest.approx(60.0)


def test_a_shortened_last_epoch_too_small_to_matter_is_not_trained():
    """75 s: after epoch 2 one step (10 s) of the next fits, a third of an epoch: trained at
    ``last_epoch_min=0.2``, not at 0.5."""
    clock = Clock()
    result = trainer(budget=TimeBudget(75 / 60, clock=clock, last_epoch_min=0.5), callbacks=[Tick(clock, 10.0)]).fit()
    assert result.epochs_run == 2 and clock.now == pytest.approx(60.0)
    clock = Clock()
    result = trainer(budget=TimeBudget(75 / 60, clock=clock, last_epoch_min=0.2), callbacks=[Tick(clock, 10.0)]).fit()
    assert result.epochs_run == 3 and result.history[-1]["epoch_fraction"] == pytest.approx(1 / 3)
    assert clock.now == pytest.approx(70.0)


def test_the_shortened_last_epoch_pays_for_its_validation_and_takes_the_place_of_an_adaptive_one():
    """10 minutes, 30 s epochs, 15 s validations, adaptive: validated at 1 and 15 (interval 5). Epoch
    18's training ends at 570 s; a whole epoch and its validation (45 s) do not fit in 30, but one
    step and the validation do: epoch 19 trains 1 of 3 steps (580 s) and validates (595 s). By
    default the run stops after epoch 18 (the test of the adaptive schedule's last quarter above)."""
    clock = Clock()
    t = trainer(epochs=1000, budget=TimeBudget(10, clock=clock, last_epoch_min=0.2), callbacks=[Tick(clock, 10.0)],
                val_every="adaptive")
    costly_validation(t, clock)
    result = t.fit()
    assert [int(r["epoch"]) for r in result.history if r["validated"]] == [1, 15, 19]
    assert result.epochs_run == 19 and result.history[-1]["epoch_fraction"] == pytest.approx(1 / 3)
    assert clock.now == pytest.approx(595.0) and clock.now <= 600.0


def test_the_budget_checks_its_last_epoch_min():
    with pytest.raises(ValueError, match="last_epoch_min"):
        TimeBudget(1.0, last_epoch_min=-0.1)
    with pytest.raises(ValueError, match="last_epoch_min"):
        TimeBudget(1.0, last_epoch_min=1.5)
    b = TimeBudget(1.0, clock=Clock(), last_epoch_min=0.2)
    assert b.last_epoch_steps(None) == 0 and b.last_epoch_steps(10) == 0  # nothing measured yet
    b.record(10.0)
    assert b.last_epoch_steps(10) == 10 and TimeBudget(1.0, clock=Clock()).last_epoch_steps(10) == 0


def test_a_run_killed_in_its_shortened_last_epoch_resumes_it_shortened(tmp_path):
    clock = Clock()

    def run(resume, **kw):
        return trainer(budget=TimeBudget(80 / 60, clock=clock, last_epoch_min=0.2), callbacks=[Tick(clock, 10.0)],
                       checkpoint_dir=tmp_path, resume=resume, **kw)

    first = run(False, epochs=10)
    train_epoch = first._train_epoch

    def killed(epoch, max_steps=None):
        if max_steps is not None:
            raise KeyboardInterrupt
        return train_epoch(epoch, max_steps=max_steps)

    first._train_epoch = killed
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    resumed = run(True).fit()
    assert resumed.epochs_run == 3 and resumed.history[-1]["epoch_fraction"] == pytest.approx(2 / 3)


class LRs(Callback):
    """The learning rate of every optimiser step."""

    def __init__(self):
        self.lrs = []

    def on_batch_end(self, trainer, epoch, batch, loss):
        self.lrs.append(trainer.current_lr)


class Slowing(Tick):
    """10 s batches from epoch ``fast_from`` on, 10 x ``factor`` s before it."""

    def __init__(self, clock, factor, fast_from):
        super().__init__(clock, 10.0)
        self.factor, self.fast_from = factor, fast_from

    def on_batch_end(self, trainer, epoch, batch, loss):
        self.clock.now += 10.0 * (self.factor if epoch < self.fast_from else 1.0)


def test_planned_end_replays_the_stop_rule():
    clock = Clock()
    b = TimeBudget(65 / 60, clock=clock)
    b.start()
    clock.now = 30.0
    b.record(30.0, 0.0)
    assert b.planned_end(1, 3, validate_now=True) == 2.0  # 35 s left: one more 30 s epoch
    clock = Clock()
    b = TimeBudget(100 / 60, clock=clock, last_epoch_min=0.2)
    b.start()
    clock.now = 30.0
    b.record(25.0, 5.0)  # 25 s of training, 5 s of validation (val_every=1)
    # 70 s: pay 5, then epoch 2 (25, validated: 5) leaves 35 >= 30: epoch 3 (25) leaves 10, and its
    # validation (5) with a shortened epoch's own (5) leaves 0 steps: epoch 3 is the end.
    assert b.planned_end(1, 5, validate_now=True) == 3.0
    # with validations every 2 epochs, epoch 2's is skipped: 5 s more, 1 step of 5 s each after epoch 3
    assert b.planned_end(1, 5, validate_now=True, val_every=2) == pytest.approx(3.2)
    assert TimeBudget(1.0, clock=clock).planned_end(4, 3, validate_now=False) == 4.0  # nothing measured
    with pytest.raises(ValueError, match="schedule"):
        TimeBudget(1.0, schedule="steps")


def test_the_epochs_schedule_ends_the_cosine_with_the_last_epoch_that_fits():
    """65 s, 30 s epochs: two fit. By the minutes the last step trains at 0.13 of the starting rate (the
    decay spans 65 s, and 50 s have passed); planned, the decay spans the two epochs: each step of
    epoch 2 trains at the cosine of the share of the six steps done before it (as CosineAnnealingLR
    per step), the last at 0.07."""
    clock, lrs = Clock(), LRs()
    t = trainer(budget=TimeBudget(65 / 60, clock=clock, schedule="epochs"), callbacks=[Tick(clock, 10.0), lrs])
    result = t.fit()
    assert result.epochs_run == 2 and result.stopped_on_budget
    assert result.history[0]["planned_epochs"] == 2.0
    # epoch 1 has no plan yet: the minutes' cosine (time moves at batch ends)
    assert lrs.lrs[:3] == pytest.approx([1e-3 * cosine_factor(p) for p in (0, 10 / 65, 20 / 65)], rel=1e-6)
    assert lrs.lrs[3:] == pytest.approx([1e-3 * cosine_factor(s / 6) for s in (3, 4, 5)], rel=1e-6)

    clock, minutes = Clock(), LRs()
    trainer(budget=TimeBudget(65 / 60, clock=clock), callbacks=[Tick(clock, 10.0), minutes]).fit()
    assert minutes.lrs[-1] == pytest.approx(1e-3 * cosine_factor(50 / 65), rel=1e-6)
    assert lrs.lrs[-1] < 0.6 * minutes.lrs[-1]


def test_the_epochs_schedule_replays_adaptive_validation_and_the_shortened_last_epoch():
    """The 10-minute adaptive run above (validated at 1, 15, 18, stopped after 18): after epoch 1
    the plan already says 18, and with last_epoch_min 18 and a third (epoch 19's one step)."""
    for last_min, end in ((None, 18.0), (0.2, 18 + 1 / 3)):
        clock, lrs = Clock(), LRs()
        t = trainer(epochs=1000, budget=TimeBudget(10, clock=clock, last_epoch_min=last_min, schedule="epochs"),
                    callbacks=[Tick(clock, 10.0), lrs], val_every="adaptive")
        costly_validation(t, clock)
        result = t.fit()
        assert [r["planned_epochs"] for r in result.history] == pytest.approx([end] * len(result.history))
        assert result.epochs_run == int(end) + (last_min is not None)
        assert lrs.lrs[-1] == pytest.approx(1e-3 * cosine_factor((len(lrs.lrs) - 1) / (3 * end)), rel=1e-6)
        assert lrs.lrs[-1] < 1e-3 * 0.01 and clock.now <= 600.0


def test_the_planned_last_epoch_ends_the_run_even_when_the_machine_speeds_up():
    """Epoch 1 costs 60 s of a 160 s budget: the plan is 2 epochs (a third would end at 180 s). Epoch 2
    runs at 30 s; by the minutes a third now fits (70 s left) and trains; planned, the cosine has
    ended with epoch 2 and the run stops."""
    clock = Clock()
    result = trainer(budget=TimeBudget(160 / 60, clock=clock, schedule="epochs"),
                     callbacks=[Slowing(clock, 2.0, fast_from=2)]).fit()
    assert result.epochs_run == 2 and result.stopped_on_budget and clock.now == pytest.approx(90.0)
    clock = Clock()
    minutes = trainer(budget=TimeBudget(160 / 60, clock=clock), callbacks=[Slowing(clock, 2.0, fast_from=2)]).fit()
    assert minutes.epochs_run == 3


def test_a_growing_plan_never_raises_the_learning_rate():
    """Epoch 1 at 60 s in 250 s plans 4 epochs (60 s each, the slowest recent). Later epochs at 30 s
    let the plan grow (to 5, then 7): the cosine must not climb back, so every step's rate is at
    most the one before."""
    clock, lrs = Clock(), LRs()
    result = trainer(budget=TimeBudget(250 / 60, clock=clock, schedule="epochs"),
                     callbacks=[Slowing(clock, 2.0, fast_from=2), lrs]).fit()
    plans = [r["planned_epochs"] for r in result.history if "planned_epochs" in r]
    assert plans[0] == 4.0 and max(plans) > plans[0]
    assert all(b <= a * (1 + 1e-9) for a, b in zip(lrs.lrs, lrs.lrs[1:]))
    assert clock.now <= 250.0 and result.epochs_run == int(plans[-1])


def test_a_resumed_run_keeps_its_plan(tmp_path):
    clock = Clock()

    def run(resume):
        return trainer(budget=TimeBudget(160 / 60, clock=clock, schedule="epochs"),
                       callbacks=[Slowing(clock, 2.0, fast_from=2)], checkpoint_dir=tmp_path, resume=resume)

    first = run(False)
    train_epoch = first._train_epoch

    def killed(epoch, max_steps=None):
        if epoch == 2:
            raise KeyboardInterrupt
        return train_epoch(epoch, max_steps=max_steps)

    first._train_epoch = killed
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    resumed = run(True)
    result = resumed.fit()
    assert resumed._plan_end == 2.0 and result.epochs_run == 2 and result.stopped_on_budget
