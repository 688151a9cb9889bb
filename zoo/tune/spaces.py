"""``-P space=<yaml>``: narrow or fix the parameters a family searches, without code.

A family declares its search space in ``search_space(trial)`` (Optuna's define-by-run calls).
The YAML maps parameter names to what to do with them::

    alpha: {low: 0.2, high: 0.6}        # narrow a float/int range (log scale kept unless given)
    kappa: {low: 0.05, high: 0.5, log: true}
    guide: [fr_sim_mat, kk_sim_mat]     # a subset of a categorical's choices
    loss: inverse_umap                  # fix: never sampled, passed to every trial
    lr: 0.0005                          # fixing a common parameter works too
    svm_C: {low: 1, high: 1000}         # the inner SVM study's ranges (svm_gamma, svm_C)

Names the family neither searches nor declares are refused, listing the valid ones — a typo must
not silently leave a parameter unsearched. The overrides are applied by :class:`SpaceTrial`, a
thin wrapper over the Optuna trial handed to ``search_space``, so families need not know of it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

SVM_PARAMS = ("svm_gamma", "svm_C")


class Fixed:
    def __init__(self, value: Any):
        self.value = value

    def __repr__(self) -> str:
        return f"Fixed({self.value!r})"


class Range:
    def __init__(self, low: float, high: float, log: bool | None = None):
        if not (math.isfinite(low) and math.isfinite(high)) or low > high:
            raise ValueError(f"range needs finite low <= high, got low={low}, high={high}")
        self.low, self.high, self.log = low, high, log

    def __repr__(self) -> str:
        return f"Range({self.low}, {self.high}, log={self.log})"


class Choices:
    def __init__(self, choices: Sequence[Any]):
        if not choices:
            raise ValueError("a list of choices needs at least one value")
        self.choices = tuple(choices)

    def __repr__(self) -> str:
        return f"Choices({list(self.choices)})"


def load_space(value: str | Path | Mapping[str, Any] | None) -> dict[str, Fixed | Range | Choices]:
    """Parse the ``space`` parameter: a YAML file path, inline YAML/JSON text, a mapping, or
    nothing (``none``/empty: the family's full space)."""
    import yaml

    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return {}
    if isinstance(value, Mapping):
        data: Any = dict(value)
    else:
        text = str(value)
        path = Path(text).expanduser()
        if path.suffix.lower() in (".yaml", ".yml", ".json") or path.is_file():
            if not path.is_file():
                raise FileNotFoundError(f"space file {path} not found; pass a YAML file such as "
                                        "space.yaml holding e.g. 'alpha: {low: 0.2, high: 0.6}'")
            text = path.read_text()
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"space is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ValueError(f"space must map parameter names to a value, a list or {{low, high}}; got {data!r}")
    out: dict[str, Fixed | Range | Choices] = {}
    for name, spec in data.items():
        name = str(name)
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"low", "high", "log"}
            if unknown or not {"low", "high"} <= set(spec):
                raise ValueError(f"space entry {name!r} must be {{low: .., high: .., log: true|false}}, "
                                 f"got {dict(spec)}")
            try:
                out[name] = Range(float(spec["low"]), float(spec["high"]),
                                  None if spec.get("log") is None else bool(spec["log"]))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"space entry {name!r}: {exc}") from None
        elif isinstance(spec, (list, tuple)):
            out[name] = Choices(spec)
        else:
            out[name] = Fixed(spec)
    return out


class SpaceTrial:
    """An Optuna trial as a family's ``search_space`` sees it, with the overrides applied.

    ``suggested`` records every name the family asked for (whatever the override), ``fixed`` the
    values it got from the YAML instead of the sampler."""

    def __init__(self, trial, overrides: Mapping[str, Fixed | Range | Choices] | None = None):
        self._trial = trial
        self._overrides = dict(overrides or {})
        self.suggested: dict[str, str] = {}   # name -> "float" | "int" | "categorical"
        self.fixed: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:  # number, report, should_prune, user attrs...
        return getattr(self._trial, name)

    def _fixed(self, name: str) -> tuple[bool, Any]:
        spec = self._overrides.get(name)
        if isinstance(spec, Fixed):
            self.fixed[name] = spec.value
            return True, spec.value
        return False, None

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        self.suggested[name] = "float"
        done, value = self._fixed(name)
        if done:
            return float(value)
        spec = self._overrides.get(name)
        if isinstance(spec, Choices):
            return float(self._trial.suggest_categorical(name, [float(c) for c in spec.choices]))
        if isinstance(spec, Range):
            low, high, log = spec.low, spec.high, log if spec.log is None else spec.log
            if log and low <= 0:
                raise ValueError(f"space entry {name!r}: a log range needs low > 0, got {low}")
        return self._trial.suggest_float(name, low, high, step=None if log else step, log=log)

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        self.suggested[name] = "int"
        done, value = self._fixed(name)
        if done:
            return int(value)
        spec = self._overrides.get(name)
        if isinstance(spec, Choices):
            return int(self._trial.suggest_categorical(name, [int(c) for c in spec.choices]))
        if isinstance(spec, Range):
            low, high, log = int(spec.low), int(spec.high), log if spec.log is None else spec.log
        return self._trial.suggest_int(name, low, high, step=1 if log else step, log=log)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        self.suggested[name] = "categorical"
        done, value = self._fixed(name)
        if done:
            return value
        spec = self._overrides.get(name)
        if isinstance(spec, Choices):
            extra = [c for c in spec.choices if c not in choices]
            if extra:
                raise ValueError(f"space entry {name!r}: {extra} not among the family's choices "
                                 f"{list(choices)}")
            choices = spec.choices
        elif isinstance(spec, Range):
            raise ValueError(f"space entry {name!r} is categorical (choices {list(choices)}): give a "
                             "list of choices or one value, not {low, high}")
        return self._trial.suggest_categorical(name, list(choices))


def probe_space(search_space: Callable[[Any], Mapping[str, Any]], overrides=None, n: int = 24,
                seed: int = 0) -> dict[str, str]:
    """Every parameter name ``search_space`` can suggest (conditional ones included, by sampling
    it ``n`` times at random in memory) -> its kind."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a throwaway in-memory study: no log lines
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        names: dict[str, str] = {}
        for _ in range(n):
            trial = study.ask()
            proxy = SpaceTrial(trial, overrides)
            search_space(proxy)
            names.update(proxy.suggested)
            study.tell(trial, 0.0)
    finally:
        optuna.logging.set_verbosity(level)
    return names


def check_names(overrides: Mapping[str, Any], searched: Iterable[str], declared: Iterable[str],
                family: str) -> None:
    """Refuse names nobody knows; a range on a declared but unsearched parameter must be fixed."""
    searched, declared = set(searched) | set(SVM_PARAMS), set(declared)
    unknown = sorted(set(overrides) - searched - declared)
    if unknown:
        raise ValueError(
            f"space names unknown parameter(s) {unknown} for family {family!r}. Searched: "
            f"{', '.join(sorted(searched))}; can be fixed: {', '.join(sorted(declared - searched))}. "
            "Fix the names in the space YAML")
    for name, spec in overrides.items():
        if name not in searched and not isinstance(spec, Fixed):
            raise ValueError(f"space entry {name!r}: family {family!r} does not search it, so it can only be "
                             f"fixed (e.g. '{name}: <value>'), not given a range or choices")


def fixed_values(overrides: Mapping[str, Any], exclude: Iterable[str] = SVM_PARAMS) -> dict[str, Any]:
    exclude = set(exclude)
    return {k: v.value for k, v in overrides.items() if isinstance(v, Fixed) and k not in exclude}
