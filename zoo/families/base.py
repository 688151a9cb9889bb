"""The Family protocol (docs/families.md): a family trains one kind of model on one fold.

The runner (:mod:`zoo.families.runner`) owns only what every family shares — configuration,
data, folds, CV parent/child runs, logging, registration — and hands the family a
:class:`FoldContext`; the family builds, trains and evaluates its model and returns a
:class:`FoldOutcome` holding a :class:`~zoo.models.ZooModel`. There is no default loss and no
default ``fit_fold``: a family says what it trains.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

import pandas as pd

from zoo.families.params import COMMON_NAMES, Param, TrainConfig, check_unique, example, parse_params

if TYPE_CHECKING:  # pragma: no cover
    from zoo.models.zoo_model import ZooModel


@dataclass
class FoldContext:
    """Everything a family needs to train one fold (built by the runner).

    ``fold`` is an int, or ``"final"`` (train on every labelled row: ``split["train"]`` is all
    but a small stratified ``split["val"]``, ``split["test"]`` is empty). ``run`` is the
    :class:`~zoo.tracking.runs.TrackedRun` (metrics, figures, artifacts); files written to
    ``out_dir`` are logged under ``family/``. ``callbacks`` are extra Trainer callbacks from
    outside (a tuning pruner, a time budget). ``loaders(**kw)`` gives the decoded, cached
    ``{"train", "val", "test"}`` DataLoaders of this fold (kw: ``sampler``, ``m_per_class``,
    ``img_size``, ``batch_size``, ``augment``...).
    """

    cfg: TrainConfig
    dataset: Any                                   # zoo.data.PreparedDataset
    fold: int | str
    split: dict[str, pd.DataFrame]
    run: Any                                       # zoo.tracking.runs.TrackedRun
    out_dir: Path
    checkpoint_dir: Path | None
    progress: bool
    callbacks: tuple = ()
    classes: list[str] = field(default_factory=list)
    severity: pd.DataFrame | None = None
    ontology: Any = None
    make_loaders: Callable[..., dict] | None = None
    options: dict[str, Any] = field(default_factory=dict)   # runner hints (embedding_map, ...)

    def loaders(self, **kw: Any) -> dict:
        if self.make_loaders is None:
            raise RuntimeError("this FoldContext has no data loaders")
        return self.make_loaders(**kw)


@dataclass
class FoldOutcome:
    """What a family returns for one fold. ``metrics``: ``test_*`` and best ``val_*`` scalars
    plus ``best_epoch``; ``test_index``: manifest row ids (image paths) of the test rows, which
    the runner turns into ``n_test`` and ``test_rows_digest``."""

    model: "ZooModel | None"
    metrics: dict[str, float]
    best_epoch: int | None
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    test_index: Sequence[str] = ()


class Family(abc.ABC):
    """Subclass, declare, register in ``zoo.families.FAMILIES`` (see docs/families.md).

    Class attributes: ``kind`` (a name in ``zoo.models.ZOO_MODELS``), ``params`` (a tuple of
    :class:`Param` declarations; on an instance ``self.params`` is the dict of typed values),
    ``primary_metric`` (``val_<m>`` for early stopping and tuning, ``test_<m>`` for gates),
    ``direction`` (``maximize``/``minimize``), ``has_classes`` (the MCS gate and class outputs
    apply). ``contract_params``: raw parameters that let the family train on the contract test's
    tiny 3-class set (empty when the defaults do).
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    params: ClassVar[Any] = ()          # tuple[Param, ...] on the class; dict of values on an instance
    primary_metric: ClassVar[str] = ""
    direction: ClassVar[str] = "maximize"
    has_classes: ClassVar[bool] = True
    contract_params: ClassVar[dict[str, str]] = {}
    # Whether fit_fold hands the common `budget` (as `self.time_budget()`) to its Trainer. A family
    # that does not is refused a budget up front: a run that ignored it would look time-boxed and
    # not be.
    takes_budget: ClassVar[bool] = False

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        decls = cls.__dict__.get("params", None)
        if decls is None:
            return
        decls = tuple(decls)
        check_unique(decls, cls.__name__)
        clash = sorted({p.name for p in decls} & set(COMMON_NAMES))
        if clash:
            raise ValueError(f"{cls.__name__}: {clash} are common parameters (zoo.families.params.COMMON_PARAMS)")
        if cls.direction not in ("maximize", "minimize"):
            raise ValueError(f"{cls.__name__}.direction must be 'maximize' or 'minimize', got {cls.direction!r}")

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        if cfg.budget is not None and not self.takes_budget:
            from zoo.families import FAMILIES  # the registry imports this module

            timed = ", ".join(n for n in FAMILIES.names() if FAMILIES.get(n).takes_budget)
            raise ValueError(f"family {self.name!r} does not train under a wall-clock budget (budget={cfg.budget:g}); "
                             f"these families do: {timed}. Drop {example('budget', f'{cfg.budget:g}')} "
                             f"and bound the run with epochs and patience")
        # parses the family's own parameters: a bad value fails before any run exists
        self.params: dict[str, Any] = parse_params(self.declarations(), dict(cfg.family_params), cfg.preset)

    def time_budget(self):
        """The Trainer's :class:`~zoo.train.budget.TimeBudget` from the common ``budget``,
        ``budget_last_epoch`` and ``budget_schedule`` (None without a budget)."""
        from zoo.train.budget import TimeBudget

        cfg = self.cfg
        if cfg.budget is None:
            return None
        return TimeBudget(cfg.budget, last_epoch_min=cfg.budget_last_epoch, schedule=cfg.budget_schedule)

    # -- declarations --------------------------------------------------------------------------
    @classmethod
    def declarations(cls) -> tuple[Param, ...]:
        """The family's own parameter declarations (``cls.params`` read on the class)."""
        return tuple(cls.params)

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        return tuple(p.name for p in cls.declarations())

    # -- what the family is ----------------------------------------------------------------------
    def tags(self) -> dict[str, str]:
        """Run and version tags that tell this family's variants apart (guide, curve, method, arch…)."""
        return {}

    def name_parts(self) -> list[str]:
        """Words of the run name after the family."""
        return [self.cfg.backbone]

    @abc.abstractmethod
    def search_space(self, trial) -> dict[str, Any]:
        """Optuna: sampled raw parameters (family + common) for one trial."""

    @abc.abstractmethod
    def output_columns(self, classes: Sequence[str]) -> list[str]:
        """The pyfunc's declared output columns for a model trained on ``classes``."""

    @abc.abstractmethod
    def fit_fold(self, ctx: FoldContext) -> FoldOutcome:
        """Build, train and evaluate one fold; return the model and its metrics."""

    def summary(self) -> dict[str, Any]:
        return {"family": self.name, **self.params}

    def gate_tags(self) -> dict[str, str]:
        """What the promotion gate needs to know about this family (version tags)."""
        return {"kind": self.kind, "primary_metric": self.primary_metric, "direction": self.direction,
                "has_classes": str(bool(self.has_classes)).lower()}
