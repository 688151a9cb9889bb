"""A wall-clock budget for one training (``budget`` minutes).

The :class:`~zoo.train.Trainer` asks the budget two things:

* **Does another epoch fit?** After each epoch's training it predicts the next epoch's cost
  (the slowest of the last epochs' training time, plus the last validation's time) and, when
  that would overrun, validates *this* epoch and stops: the run ends on a validated epoch, inside
  the budget, and says so (``stopped_on_budget``). With ``last_epoch_min`` set, the steps of the
  next epoch that still fit before its validation (:meth:`last_epoch_steps`) train as a shortened
  last epoch instead, as a plain loop that trains until its minutes end does (the common
  parameter ``budget_last_epoch``). It is off by default: stopping before the epoch leaves up to
  an epoch of the budget unused (18-66 s of PBC's 720 in bf16; up to ~30 % of it in fp32, where
  the 720 s hold 2-3 epochs), but filling it tied on PBC's validation folds in both (the
  README's eighth and twelfth 6-fold runs).
* **When to validate?** With ``val_every=adaptive``, :meth:`validation_due`: once early (it
  measures what a validation costs, which the stop rule needs, and catches a broken run), then
  not before ``select_from`` of the budget is spent, spaced by :meth:`validation_interval` so
  they cost about a tenth of the training time. Under a cosine decay that ends with the budget
  the model improves until the learning rate is small, so the best epoch lies in the last part;
  a validation before it selects nothing and costs training (on PBC, 12 minutes, the 2-core
  machine: validations at epochs 1, 5/6, 7/8, ... cost ~1.8 of ~16 epochs, and the best epoch
  was in the last quarter in 8 of 9 runs, within 0.1 pp of it in the ninth).
* **How far along are we?** :meth:`TimeBudget.progress` is the fraction of the budget spent (or
  of the epochs, whichever is further), which drives a cosine learning-rate decay that reaches
  ~0 when the budget does, instead of spanning an epoch count the budget would cut short.
  With ``schedule="epochs"`` (the common parameter ``budget_schedule``) the decay spans instead
  the epochs the budget will train: after each epoch :meth:`planned_end` predicts, with the stop
  rule and the costs measured so far, the epoch the run will end with, and the cosine reaches 0
  at its end. Under ``"minutes"`` the run stops when the next epoch would not fit, wherever the
  cosine is then: harmless when the budget holds 15 epochs (it ends at ~0.01 of the base rate),
  but where it holds 2-3 (fp32 on a slow CPU) the last epoch ran from 0.7 to ~0.3 of it. The
  plan is as cautious as the stop rule (the slowest recent epoch) but, unlike it, commits: on
  PBC in fp32 with 6-9 epochs (the README's thirteenth run) uneven epochs under load made it end
  an epoch earlier than the default on 3 of 6 folds, a tie behind it, so "minutes" stays the
  default.

Time spent before a resume is carried in the checkpoint (``state_dict``), so a resumed run gets
what is left, not a fresh budget.
"""

from __future__ import annotations

import math
import time


# What a budgeted cosine decay spans: the budget's minutes, or the whole epochs predicted to fit.
SCHEDULES = ("minutes", "epochs")


class TimeBudget:
    """``minutes`` of wall time for the training loop (data decoding before it is not counted).

    ``clock``: a ``() -> seconds`` function (default ``time.perf_counter``; tests inject one).
    ``select_from``: share of the budget after which adaptive validations resume (see
    :meth:`validation_due`). ``last_epoch_min``: train a shortened last epoch when at least this
    share of an epoch's steps fits (e.g. 0.2; see :meth:`last_epoch_steps`); None (the default)
    stops before an epoch that would not fit. ``schedule``: what the Trainer's cosine decay spans,
    ``"minutes"`` (the budget's time) or ``"epochs"`` (the epochs :meth:`planned_end` predicts)."""

    def __init__(self, minutes: float, clock=time.perf_counter, select_from: float = 0.75,
                 last_epoch_min: float | None = None, schedule: str = "minutes") -> None:
        minutes = float(minutes)
        if not minutes > 0 or not math.isfinite(minutes):
            raise ValueError(f"budget must be a positive number of minutes, got {minutes}")
        if not 0.0 <= float(select_from) <= 1.0:
            raise ValueError(f"select_from must be a share of the budget in [0, 1], got {select_from}")
        if last_epoch_min is not None and not 0.0 <= float(last_epoch_min) <= 1.0:
            raise ValueError(f"last_epoch_min must be a share of an epoch in [0, 1] or None (off), "
                             f"got {last_epoch_min}")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        self.schedule = schedule
        self.seconds = minutes * 60.0
        self.last_epoch_min = None if last_epoch_min is None else float(last_epoch_min)
        self.select_from = float(select_from)
        self.clock = clock
        self._start: float | None = None
        self._carried = 0.0  # seconds used before a resume
        self.train_times: list[float] = []
        self.val_time = 0.0

    def start(self) -> None:
        self._start = self.clock()

    @property
    def elapsed(self) -> float:
        return self._carried + (self.clock() - self._start if self._start is not None else 0.0)

    @property
    def remaining(self) -> float:
        return self.seconds - self.elapsed

    def record(self, train_seconds: float, validate_seconds: float | None = None) -> None:
        self.train_times.append(float(train_seconds))
        if validate_seconds is not None:
            self.val_time = float(validate_seconds)

    def next_epoch_cost(self) -> float:
        """Predicted cost of one more epoch: the slowest of the last three trainings (a neighbour's
        load makes epochs uneven; under-predicting overruns) plus the last validation."""
        recent = self.train_times[-3:]
        return (max(recent) if recent else 0.0) + self.val_time

    def another_epoch_fits(self, validate_now: bool = True) -> bool:
        """After an epoch's training: would the *next* epoch (and its validation) still fit, once this
        epoch's validation (``validate_now``) is paid for?"""
        pending = self.val_time if validate_now else 0.0
        return self.remaining - pending >= self.next_epoch_cost()

    def last_epoch_steps(self, steps_per_epoch: int | None, validate_now: bool = False,
                         validate_last: bool = True) -> int:
        """When another whole epoch does not fit: how many of its ``steps_per_epoch`` steps do, once
        this epoch's validation (``validate_now``) and the shortened epoch's own (``validate_last``)
        are paid for; 0 when fewer than ``last_epoch_min`` of an epoch fit, or it is None. A step
        costs the slowest recent epoch's share (as :meth:`next_epoch_cost` predicts epochs), so the
        box is not overrun when a neighbour slows the machine down."""
        recent = self.train_times[-3:]
        if self.last_epoch_min is None or not steps_per_epoch or not recent:
            return 0
        box = self.remaining - (self.val_time if validate_now else 0.0) - (self.val_time if validate_last else 0.0)
        return self._steps_in(box, max(recent), steps_per_epoch)

    def _steps_in(self, box: float, epoch_seconds: float, steps_per_epoch: int) -> int:
        """Whole steps of an epoch costing ``epoch_seconds`` that fit in ``box`` seconds, or 0 when
        fewer than ``last_epoch_min`` of the epoch fit."""
        per_step = epoch_seconds / steps_per_epoch
        steps = min(int(steps_per_epoch), int(box // per_step)) if per_step > 0 and box > 0 else 0
        return steps if steps > 0 and steps >= self.last_epoch_min * steps_per_epoch else 0

    def planned_end(self, epoch: int, steps_per_epoch: int | None, validate_now: bool, validates: bool = True,
                    val_every: int | None = 1, next_val: int = 1) -> float:
        """After training epoch ``epoch``, when another epoch fits: the epoch the run will end with
        if the coming epochs cost what the recent ones did (:meth:`next_epoch_cost`), as the stop
        rule will decide them, plus the share of a shortened last epoch (``last_epoch_min``).

        The stop rule is replayed, not approximated: every epoch trains for the slowest recent
        training time; its validation is paid when due, ``val_every`` epochs apart or, with
        ``val_every=None`` (adaptive), as :meth:`validation_due` spaces them from ``next_val``;
        ``validate_now``: this epoch's own validation is still to pay. Under-predicting would
        anneal to 0 an epoch early and over-predicting leave the rate up at the stop, so the
        Trainer predicts again after every epoch."""
        recent = self.train_times[-3:]
        if not recent:
            return float(epoch)
        t, v = max(recent), self.val_time
        adaptive = val_every is None
        interval = self.validation_interval()
        remaining = self.remaining - (v if validate_now else 0.0)
        if adaptive and validate_now:
            next_val = epoch + interval
        end, due, pending = epoch, False, 0.0
        while remaining >= t + v:  # another_epoch_fits
            remaining -= t
            end += 1
            if adaptive:
                due = end >= next_val and (self.seconds - remaining) / self.seconds >= self.select_from
            else:
                due = end % int(val_every) == 0
            pending = v if validates and due else 0.0
            if remaining - pending < t + v:
                break  # `end` is the last whole epoch
            remaining -= pending
            if adaptive and due:
                next_val = end + interval
        if self.last_epoch_min is None or not steps_per_epoch or end == epoch:
            return float(end)
        # The shortened last epoch, as last_epoch_steps would size it (in whole steps).
        pay_now = validates and due and not adaptive
        box = remaining - (pending if pay_now else 0.0) - (v if validates else 0.0)
        return end + self._steps_in(box, t, steps_per_epoch) / steps_per_epoch

    def validation_interval(self, share: float = 0.1, most: int = 8) -> int:
        """Epochs between validations that keep validation to about ``share`` of the training time
        (``val_every=adaptive``): 1 while validation is cheap, up to ``most`` when it is not (an
        SVM grid search on a large set, slow embedding). The last epoch is always validated."""
        recent = sorted(self.train_times[-3:])
        if not recent or self.val_time <= 0:
            return 1
        train = recent[len(recent) // 2]
        return int(min(most, max(1, round(self.val_time / (share * max(train, 1e-9))))))

    def validation_due(self, epoch: int, next_val: int) -> bool:
        """``val_every=adaptive``: validate after training epoch ``epoch``? (The last epoch is
        validated regardless, by the Trainer.) The first time always (its cost is unknown until
        measured); then once ``select_from`` of the budget is spent and ``next_val`` is reached."""
        if self.val_time <= 0:
            return True
        return epoch >= next_val and self.progress() >= self.select_from

    def progress(self) -> float:
        return min(1.0, max(0.0, self.elapsed / self.seconds))

    def state_dict(self) -> dict:
        return {"elapsed": self.elapsed, "train_times": list(self.train_times), "val_time": self.val_time}

    def load_state_dict(self, state: dict) -> None:
        self._carried = float(state.get("elapsed", 0.0))
        self.train_times = [float(t) for t in state.get("train_times", [])]
        self.val_time = float(state.get("val_time", 0.0))
        self._start = None


def cosine_factor(progress: float) -> float:
    """Cosine decay from 1 to 0 over progress 0..1 (the shape of ``CosineAnnealingLR``)."""
    p = min(1.0, max(0.0, float(progress)))
    return 0.5 * (1.0 + math.cos(math.pi * p))
