"""Training parameters: the common entry-point parameters of ARCHITECTURE.md, their presets, and
the parsing of MLflow's string parameters into typed, validated values.

MLflow's MLproject only knows string/float/path/uri parameters, so ints and bools arrive as text.
Every value is parsed here once, with an error that names the parameter, the bad value and an
example of a good one — the entry points and the CLI stay thin.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

AUTO = "auto"  # "take the preset's value"

# The two presets. `cpu` is sized for a 2-core laptop-class machine (the default); `paper` is the
# setting of the guide papers (DenseNet-121, 224 px, patience 50, grid search every 5 epochs).
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": dict(backbone="resnet18", img_size=64, epochs=30, patience=8, batch_size=64,
                lr=1e-3, svm_every=5, embedding_dim=256, svm_max_search=1500),
    "paper": dict(backbone="densenet121", img_size=224, epochs=1000, patience=50, batch_size=32,
                  lr=1e-4, svm_every=5, embedding_dim=256, svm_max_search=None),
}


@dataclass
class TrainConfig:
    """Resolved configuration of one training job (all folds)."""

    family: str
    dataset: str = "synth"
    fold: int | str = 0          # an int in [0, n_folds) or "all"
    preset: str = "cpu"
    epochs: int = 30
    patience: int = 8
    img_size: int = 64
    batch_size: int = 64
    backbone: str = "resnet18"
    embedding_dim: int = 256
    lr: float = 1e-3
    svm_every: int = 5
    svm_max_search: int | None = 1500  # grid search on a stratified subsample (preset; None = all)
    seed: int = 0
    limit: int | None = None
    register: bool = True
    pretrained: str | None = None
    device: str = "auto"
    resume: bool = False
    num_workers: int | str = "auto"
    family_params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update({f"{k}": v for k, v in d.pop("family_params").items()})
        return d


def parse_int(name: str, value: Any, *, minimum: int | None = None, allow_none: bool = False) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        if allow_none:
            return None
        raise ValueError(f"parameter {name!r} needs a whole number, got nothing (e.g. -P {name}=10)")
    if isinstance(value, bool):
        raise ValueError(f"parameter {name!r} needs a whole number, got {value!r} (e.g. -P {name}=10)")
    try:
        as_float = float(value)
        if not as_float.is_integer():
            raise ValueError
        out = int(as_float)
    except (TypeError, ValueError):
        raise ValueError(f"parameter {name!r} needs a whole number, got {value!r} (e.g. -P {name}=10)") from None
    if minimum is not None and out < minimum:
        raise ValueError(f"parameter {name!r} must be >= {minimum}, got {out}")
    return out


def parse_float(name: str, value: Any, *, low: float | None = None, high: float | None = None) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"parameter {name!r} needs a number, got {value!r} (e.g. -P {name}=0.4)") from None
    if out != out or out in (float("inf"), float("-inf")):
        raise ValueError(f"parameter {name!r} must be finite, got {value!r}")
    if (low is not None and out < low) or (high is not None and out > high):
        raise ValueError(f"parameter {name!r} must lie in [{low}, {high}], got {out}")
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
    raise ValueError(f"parameter {name!r} needs true or false, got {value!r} (e.g. -P {name}=false)")


def parse_choice(name: str, value: Any, choices: list[str] | tuple[str, ...]) -> str:
    text = str(value).strip()
    if text not in choices:
        raise ValueError(f"parameter {name!r} must be one of {', '.join(choices)}; got {value!r}")
    return text


def parse_fold(value: Any) -> int | str:
    text = str(value).strip().lower()
    if text == "all":
        return "all"
    try:
        return parse_int("fold", text, minimum=0)  # type: ignore[return-value]
    except ValueError:
        raise ValueError(f"parameter 'fold' must be a fold number (0, 1, ...) or 'all', got {value!r}") from None


def _is_auto(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", AUTO))


def resolve_config(family: str, raw: Mapping[str, Any], family_param_names: tuple[str, ...] = ()) -> TrainConfig:
    """Turn raw (string) parameters into a validated TrainConfig.

    ``raw`` may hold any of the common parameters; ``auto``/missing values take the preset's.
    Parameters in ``family_param_names`` are passed through untouched for the family to parse;
    anything else is an error naming the unknown keys (a typo must not be silently ignored).
    """
    raw = dict(raw)
    preset = parse_choice("preset", raw.pop("preset", "cpu") or "cpu", tuple(PRESETS))
    base = PRESETS[preset]

    def pick(key: str) -> Any:
        value = raw.pop(key, None)
        return base[key] if _is_auto(value) else value

    cfg = TrainConfig(family=family, preset=preset)
    cfg.dataset = str(raw.pop("dataset", None) or "synth")
    cfg.fold = parse_fold(raw.pop("fold", 0))
    cfg.epochs = parse_int("epochs", pick("epochs"), minimum=1)  # type: ignore[assignment]
    cfg.patience = parse_int("patience", pick("patience"), minimum=1)  # type: ignore[assignment]
    cfg.img_size = parse_int("img_size", pick("img_size"), minimum=16)  # type: ignore[assignment]
    cfg.batch_size = parse_int("batch_size", pick("batch_size"), minimum=4)  # type: ignore[assignment]
    cfg.embedding_dim = parse_int("embedding_dim", pick("embedding_dim"), minimum=2)  # type: ignore[assignment]
    cfg.svm_every = parse_int("svm_every", pick("svm_every"), minimum=1)  # type: ignore[assignment]
    cfg.svm_max_search = base["svm_max_search"]
    cfg.lr = parse_float("lr", pick("lr"), low=0.0)
    if cfg.lr <= 0:
        raise ValueError(f"parameter 'lr' must be > 0, got {cfg.lr}")
    cfg.backbone = str(pick("backbone"))
    cfg.seed = parse_int("seed", raw.pop("seed", 0), minimum=0)  # type: ignore[assignment]
    cfg.limit = parse_int("limit", raw.pop("limit", None), minimum=1, allow_none=True)
    if cfg.limit == 0:
        cfg.limit = None
    cfg.register = parse_bool("register", raw.pop("register", True))
    cfg.resume = parse_bool("resume", raw.pop("resume", False))
    pretrained = raw.pop("pretrained", None)
    cfg.pretrained = None if _is_auto(pretrained) or str(pretrained).lower() in ("none", "false") else str(pretrained)
    cfg.device = str(raw.pop("device", AUTO) or AUTO)
    workers = raw.pop("num_workers", AUTO)
    cfg.num_workers = AUTO if _is_auto(workers) else parse_int("num_workers", workers, minimum=0)  # type: ignore[assignment]

    cfg.family_params = {k: raw.pop(k) for k in list(raw) if k in family_param_names}
    if raw:
        known = sorted({f.name for f in dataclasses.fields(TrainConfig)} - {"family", "family_params", "svm_max_search"}
                       | set(family_param_names))
        raise ValueError(f"unknown parameter(s) {sorted(raw)} for family {family!r}; "
                         f"known parameters: {', '.join(known)}")
    return cfg
