"""Training parameters as declarations: one :class:`Param` per parameter, for the common ones
(:data:`COMMON_PARAMS`) and for each family (``Family.params``).

```python
Param("alpha", float, 0.4, "weight of the guide term vs. the triplet margin loss", low=0.0, high=1.0)
Param("kappa", float, 0.2, "smoothing of inverse-UMAP targets (Eq. 1)", low=0.0, high=0.999,
      when={"loss": "inverse_umap"})      # only parsed/used when loss == inverse_umap
```

MLflow's MLproject only knows string/float/path/uri parameters, so ints and bools arrive as text.
``Param.parse`` turns them into typed values once, with an error naming the parameter, the bad
value and an example in the syntax of the caller (``-P epochs=10`` under ``mlflow run``,
``--epochs 10`` on the ``zoo`` command line: :func:`param_syntax`). ``zoo train <family> --help``,
the MLproject (checked by a test) and the validation all come from these declarations.
"""

from __future__ import annotations

import contextvars
import dataclasses
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

AUTO = "auto"  # "take the preset's value"

# The two presets. `cpu` is sized for a 2-core laptop-class machine (the default); `paper` is the
# setting of the guide papers (DenseNet-121, 224 px, patience 50, grid search every 5 epochs).
# Neither preset sets a wall-clock `budget`: a budget makes the epoch count and the learning-rate
# schedule depend on the machine's load, so runs would stop being reproducible for a seed. Ask for
# one (`-P budget=4.1`, what the quickstart does) when a time box matters more; the cpu preset then
# spaces validations to ~10 % of the training time (val_every=adaptive). svm_train_max:
# training images embedded for the per-epoch SVM validation (stratified; None = all).
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": dict(backbone="resnet18", img_size=64, epochs=30, patience=8, batch_size=64,
                lr=1e-3, svm_every=5, embedding_dim=256, ce_weight=1.0, ce_on="features", svm_max_search=1500,
                sampler="m_per_class", svm_input="embedding", precision="auto", budget=None, val_every="adaptive",
                svm_train_max=1500, budget_last_epoch=None, budget_schedule="minutes"),
    "paper": dict(backbone="densenet121", img_size=224, epochs=1000, patience=50, batch_size=32,
                  lr=1e-4, svm_every=5, embedding_dim=256, ce_weight=0.0, ce_on="embedding", svm_max_search=None,
                  sampler="m_per_class", svm_input="embedding", precision="auto", budget=None, val_every=1,
                  svm_train_max=None, budget_last_epoch=None, budget_schedule="minutes"),
}

# How an example value is written in error messages: "mlflow" (-P name=value, the MLproject),
# "cli" (--name value, `zoo train`) or "python" (name=value, zoo.families.train()).
_SYNTAX: contextvars.ContextVar[str] = contextvars.ContextVar("zoo_param_syntax", default="mlflow")


@contextmanager
def param_syntax(syntax: str) -> Iterator[None]:
    """Within this context, parameter errors show examples as ``syntax`` writes them."""
    if syntax not in ("mlflow", "cli", "python"):
        raise ValueError(f"param syntax must be mlflow, cli or python, got {syntax!r}")
    token = _SYNTAX.set(syntax)
    try:
        yield
    finally:
        _SYNTAX.reset(token)


def example(name: str, value: Any) -> str:
    """``-P epochs=10`` / ``--epochs 10`` / ``epochs=10`` depending on :func:`param_syntax`."""
    syntax = _SYNTAX.get()
    if syntax == "cli":
        return f"--{name} {value}"
    if syntax == "python":
        return f"{name}={value}"
    return f"-P {name}={value}"


# --------------------------------------------------------------------------------------------
# scalar parsers (also used directly by the other commands)
# --------------------------------------------------------------------------------------------
_NONE = ("", "none", "null")


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _NONE)


def parse_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None,
              allow_none: bool = False) -> int | None:
    if _is_none(value):
        if allow_none:
            return None
        raise ValueError(f"parameter {name!r} needs a whole number, got nothing (e.g. {example(name, 10)})")
    if isinstance(value, bool):
        raise ValueError(f"parameter {name!r} needs a whole number, got {value!r} (e.g. {example(name, 10)})")
    try:
        as_float = float(value)
        if not as_float.is_integer():
            raise ValueError
        out = int(as_float)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"parameter {name!r} needs a whole number, got {value!r} "
                         f"(e.g. {example(name, 10)})") from None
    if minimum is not None and out < minimum:
        raise ValueError(f"parameter {name!r} must be >= {minimum}, got {out}")
    if maximum is not None and out > maximum:
        raise ValueError(f"parameter {name!r} must be <= {maximum}, got {out}")
    return out


def parse_float(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                open_low: bool = False) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"parameter {name!r} needs a number, got {value!r} (e.g. {example(name, 0.4)})") from None
    if not math.isfinite(out):
        raise ValueError(f"parameter {name!r} must be finite, got {value!r}")
    if (low is not None and (out < low or (open_low and out <= low))) or (high is not None and out > high):
        lo = "(" if open_low else "["
        raise ValueError(f"parameter {name!r} must lie in {lo}{low}, {high if high is not None else 'inf'}], "
                         f"got {out}")
    return out


_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"parameter {name!r} needs true or false, got {value!r} (e.g. {example(name, 'false')})")


def parse_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    text = str(value).strip()
    if text not in choices:
        raise ValueError(f"parameter {name!r} must be one of {', '.join(choices)}; got {value!r} "
                         f"(e.g. {example(name, choices[0])})")
    return text


FINAL = "final"


def parse_fold(value: Any) -> int | str:
    """A fold number, ``all`` (every fold, nested runs) or ``final`` (train on every labelled row)."""
    text = str(value).strip().lower()
    if text in ("all", FINAL):
        return text
    try:
        return parse_int("fold", text, minimum=0)  # type: ignore[return-value]
    except ValueError:
        raise ValueError(f"parameter 'fold' must be a fold number (0, 1, ...), 'all' or 'final', got {value!r} "
                         f"(e.g. {example('fold', 0)})") from None


def parse_val_every(value: Any) -> int | str:
    """``val_every``: a number of epochs, or ``adaptive`` (with a budget, validations spaced to
    cost ~10 % of the training time; without one, every epoch)."""
    if str(value).strip().lower() == "adaptive":
        return "adaptive"
    try:
        return parse_int("val_every", value, minimum=1)  # type: ignore[return-value]
    except ValueError:
        raise ValueError(f"parameter 'val_every' must be a number of epochs >= 1 or 'adaptive', got {value!r} "
                         f"(e.g. {example('val_every', 2)})") from None


def _is_auto(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", AUTO))


# --------------------------------------------------------------------------------------------
# declarations
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One entry-point parameter: name, type, default, meaning and its valid values.

    ``type``: int, float, str or bool. ``low``/``high`` bound numbers (``open_low``: strictly
    above ``low``); ``choices`` lists the valid strings; ``when`` makes the parameter apply only
    when other (earlier-declared) parameters have these values; ``allow_none`` accepts
    ``none``; a default of ``"auto"`` takes the preset's value (:data:`PRESETS`); ``log`` says
    a search samples it on a log scale; ``parser`` replaces the type's parser (e.g. ``fold``).
    """

    name: str
    type: type
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    when: Mapping[str, Any] | None = None
    allow_none: bool = False
    open_low: bool = False
    log: bool = False
    parser: Callable[[Any], Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.type not in (int, float, str, bool):
            raise TypeError(f"Param {self.name!r}: type must be int, float, str or bool, got {self.type!r}")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))

    @property
    def auto(self) -> bool:
        return isinstance(self.default, str) and self.default == AUTO

    def applies(self, values: Mapping[str, Any]) -> bool:
        """Whether this parameter is used given the already-parsed ``values`` (its ``when``)."""
        return all(values.get(k) == v for k, v in (self.when or {}).items())

    def parse(self, value: Any, preset: str = "cpu") -> Any:
        """The typed value of ``value`` (a string from MLflow or the CLI, or a typed value);
        ``auto`` takes the preset's value; errors name the parameter and give an example."""
        if self.auto and _is_auto(value):
            if self.name not in PRESETS[preset]:
                return AUTO  # resolved where it is used (device, workers)
            value = PRESETS[preset][self.name]
            if value is None:
                return None
        if self.parser is not None:
            return self.parser(value)
        if _is_none(value) and self.allow_none:
            return None
        if self.type is bool:
            return parse_bool(self.name, value)
        if self.type is int:
            return parse_int(self.name, value, minimum=None if self.low is None else int(self.low),
                             maximum=None if self.high is None else int(self.high))
        if self.type is float:
            return parse_float(self.name, value, low=self.low, high=self.high, open_low=self.open_low)
        if self.choices is not None:
            return parse_choice(self.name, value, self.choices)
        text = str(value).strip()
        if not text:
            raise ValueError(f"parameter {self.name!r} needs a value (e.g. {example(self.name, self.default)})")
        return text

    def suggest(self, trial, *, low: float | None = None, high: float | None = None,
                choices: Sequence[Any] | None = None) -> Any:
        """Sample this parameter from an Optuna ``trial`` within its declared range (or the
        narrower ``low``/``high``/``choices`` given)."""
        choices = choices if choices is not None else self.choices
        if self.type is bool:
            return trial.suggest_categorical(self.name, [False, True])
        if choices is not None:
            return trial.suggest_categorical(self.name, list(choices))
        lo = self.low if low is None else low
        hi = self.high if high is None else high
        if lo is None or hi is None:
            raise ValueError(f"parameter {self.name!r} has no range to search: pass low= and high=")
        if self.type is int:
            return trial.suggest_int(self.name, int(lo), int(hi), log=self.log)
        return trial.suggest_float(self.name, float(lo), float(hi), log=self.log)

    def default_text(self) -> str:
        """The default as the MLproject writes it (strings, ``none`` for None)."""
        if self.default is None:
            return "none"
        if isinstance(self.default, bool):
            return str(self.default).lower()
        return str(self.default)

    def describe(self) -> str:
        """Meaning plus the valid values, for ``--help`` and the README table."""
        bits = [self.help]
        if self.choices:
            bits.append(f"one of {', '.join(self.choices)}")
        elif self.type in (int, float) and (self.low is not None or self.high is not None):
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            bits.append(f"{'(' if self.open_low else '['}{lo}, {hi}]")
        if self.allow_none:
            bits.append("'none' for no value")
        if self.auto and self.name in PRESETS["cpu"]:
            bits.append("'auto' = the preset's value")
        if self.when:
            bits.append("only when " + ", ".join(f"{k}={v}" for k, v in self.when.items()))
        return "; ".join(bits)


def parse_params(decls: Iterable[Param], raw: Mapping[str, Any], preset: str = "cpu") -> dict[str, Any]:
    """Typed values of the declared parameters from ``raw`` (missing ones take their default).
    A parameter whose ``when`` does not hold is left out (and its raw value ignored: the
    MLproject passes every parameter, used or not). Unknown keys are the caller's concern."""
    values: dict[str, Any] = {}
    for p in decls:
        if not p.applies(values):
            continue
        values[p.name] = p.parse(raw.get(p.name, p.default), preset)
    return values


def check_unique(decls: Sequence[Param], where: str) -> None:
    seen: set[str] = set()
    for p in decls:
        if p.name in seen:
            raise ValueError(f"{where}: parameter {p.name!r} is declared twice")
        seen.add(p.name)


# The parameters every training entry point takes (same names, same meaning).
COMMON_PARAMS: tuple[Param, ...] = (
    Param("dataset", str, "synth", "name of a prepared dataset (data/prepared/<name>)"),
    Param("fold", str, "0", "CV iteration 0..k-1 (fold k = test, k+1 = validation), 'all' = every fold as "
                            "nested child runs, 'final' = train on every labelled row", parser=parse_fold),
    Param("epochs", int, AUTO, "maximum epochs", low=1),
    Param("patience", int, AUTO, "early-stopping patience (epochs without gain of the primary validation metric)",
          low=1),
    Param("img_size", int, AUTO, "training resolution in px", low=16),
    Param("batch_size", int, AUTO, "images per batch", low=4),
    Param("backbone", str, AUTO, "any timm model name"),
    Param("lr", float, AUTO, "AdamW learning rate", low=0.0, open_low=True, log=True),
    Param("seed", int, 0, "seed of everything (data order, weights, SVM)", low=0),
    Param("limit", int, None, "use at most this many images (stratified): smoke runs", low=1, allow_none=True),
    Param("preset", str, "cpu", "cpu: resnet18, 64 px, 30 epochs, patience 8; paper: the papers' settings",
          choices=tuple(PRESETS)),
    Param("register", bool, True, "register the model as zoo-<family>@candidate"),
    Param("pretrained", str, None, "local checkpoint path for the backbone (nothing is downloaded), or the URI of "
          "a registered autoencoder (models:/zoo-autoencoder@candidate) to start from its encoder",
          allow_none=True),
    Param("device", str, AUTO, "auto | cpu | cuda | cuda:1 ..."),
    Param("resume", bool, False, "continue the last interrupted run of this configuration"),
    Param("num_workers", str, AUTO, "data-loader worker processes ('auto' = by CPU count)"),
    Param("precision", str, AUTO, "auto (bf16 on CPUs where it is measured faster, AMP on CUDA) | fp32 | bf16",
          choices=("auto", "fp32", "bf16")),
    Param("budget", float, AUTO, "training wall-clock minutes: stops before an epoch that would not fit, the "
                                 "cosine schedule spans it (none = epochs only)", low=0.0, open_low=True,
          allow_none=True),
    Param("budget_last_epoch", float, AUTO, "with a budget: when at least this share of an epoch still fits, train "
          "it as a shortened last epoch so the budget is spent and the cosine reaches its end (none = stop before "
          "an epoch that would not fit)", low=0.0, high=1.0, allow_none=True),
    Param("budget_schedule", str, AUTO, "with a budget: what the cosine learning-rate decay spans, minutes (the "
          "budget's time) or epochs (the whole epochs predicted to fit, so it ends at 0 with the last one)",
          choices=("minutes", "epochs")),
    Param("val_every", str, AUTO, "validate (SVM stage) every N epochs and at the last; adaptive: with a budget, "
                                  "as often as keeps validation ~10 % of the training time (cpu preset)",
          parser=parse_val_every),
    Param("cv_run", str, None, "fold=final: run id of a fold=all parent; its chosen epoch count and test "
                               "estimate are used", allow_none=True),
    Param("nproc", int, 1, "training processes on this host: > 1 runs DDP under torchrun (gloo on CPU, nccl on "
                           "GPU; each process trains on its share of the rows with the batch size given)", low=1),
    Param("restarts", int, 0, "with nproc > 1: torchrun restarts the workers this many times after a failure; "
                              "they resume from the last checkpoint", low=0),
)
COMMON_NAMES: tuple[str, ...] = tuple(p.name for p in COMMON_PARAMS)


@dataclass
class TrainConfig:
    """Resolved common parameters of one training job (all folds); the family's own typed
    parameters are ``Family.params`` (their raw values ride along in ``family_params``)."""

    family: str
    dataset: str = "synth"
    fold: int | str = 0          # an int in [0, n_folds), "all" or "final"
    preset: str = "cpu"
    epochs: int = 30
    patience: int = 8
    img_size: int = 64
    batch_size: int = 64
    backbone: str = "resnet18"
    lr: float = 1e-3
    seed: int = 0
    limit: int | None = None
    register: bool = True
    pretrained: str | None = None
    device: str = "auto"
    resume: bool = False
    num_workers: int | str = "auto"
    precision: str = "auto"
    budget: float | None = None
    budget_last_epoch: float | None = None
    budget_schedule: str = "minutes"
    val_every: int | str = 1
    cv_run: str | None = None
    nproc: int = 1
    restarts: int = 0
    family_params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update({f"{k}": v for k, v in d.pop("family_params").items()})
        return d


def _parse_workers(value: Any) -> int | str:
    return AUTO if _is_auto(value) else parse_int("num_workers", value, minimum=0)  # type: ignore[return-value]


def resolve_config(family: str, raw: Mapping[str, Any], family_param_names: Iterable[str] = ()) -> TrainConfig:
    """Turn raw (string) parameters into a validated :class:`TrainConfig`.

    ``raw`` may hold any of :data:`COMMON_PARAMS`; ``auto``/missing values take the preset's.
    Parameters in ``family_param_names`` are passed through untouched for the family to parse;
    anything else is an error naming the unknown keys (a typo must not be silently ignored).
    """
    raw = dict(raw)
    family_param_names = tuple(family_param_names)
    preset_param = next(p for p in COMMON_PARAMS if p.name == "preset")
    preset = preset_param.parse(raw.get("preset", "cpu") if not _is_none(raw.get("preset")) else "cpu")
    cfg = TrainConfig(family=family, preset=preset)
    for p in COMMON_PARAMS:
        value = raw.pop(p.name, p.default)
        if p.name == "num_workers":
            cfg.num_workers = _parse_workers(value)
            continue
        if p.name == "device" and _is_none(value):
            value = AUTO
        parsed = p.parse(value, preset)
        if p.name == "pretrained" and isinstance(parsed, str) and parsed.lower() == "false":
            parsed = None
        setattr(cfg, p.name, parsed)
    if cfg.budget_last_epoch is not None and cfg.budget is None:
        # Refused rather than ignored: without a budget there is no last epoch to shorten, and a
        # user who set it expects the time box it belongs to.
        raise ValueError(f"parameter 'budget_last_epoch' ({cfg.budget_last_epoch:g}) shortens the last epoch of a "
                         f"wall-clock budget, and no budget is set: give one (e.g. {example('budget', 12)}) or "
                         f"drop budget_last_epoch")
    if cfg.budget_schedule != "minutes" and cfg.budget is None:
        raise ValueError(f"parameter 'budget_schedule' ({cfg.budget_schedule}) shapes the learning rate under a "
                         f"wall-clock budget, and no budget is set: give one (e.g. {example('budget', 12)}) or "
                         f"drop budget_schedule (without a budget the cosine spans the epochs)")
    cfg.family_params = {k: raw.pop(k) for k in list(raw) if k in family_param_names}
    if raw:
        known = sorted(set(COMMON_NAMES) | set(family_param_names))
        raise ValueError(f"unknown parameter(s) {sorted(raw)} for family {family!r}; "
                         f"known parameters: {', '.join(known)}")
    return cfg
