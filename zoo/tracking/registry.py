"""Model registry: versions of ``zoo-<family>``, aliases and gated promotion.

Aliases (never the deprecated stages): ``candidate`` (set on every registration), ``staging``,
``production`` and ``previous`` (the last holder of ``production``; for ``staging`` it is
``previous_staging``, so rolling back one alias never resurrects the other's old holder).

A promotion is a comparison of like with like: the candidate's test metrics (version tags
``test_macro_f1``, ``test_mcs``) must come from the same dataset digest as the current holder's
and be no worse — macro-F may be lower by at most ``tolerance``, MCS higher by at most
``tolerance`` — unless ``force``. Everything is validated before the first write, so a refused or
malformed request leaves the registry exactly as it was.
"""

from __future__ import annotations

import getpass
import math
import re
from datetime import datetime, timezone
from typing import Any, Mapping

import pandas as pd

from zoo.tracking import store

CANDIDATE = "candidate"
PREVIOUS = "previous"
PROMOTION_ALIASES = ("staging", "production")
ALIASES = (CANDIDATE, "staging", "production", PREVIOUS)
# Version tags of ARCHITECTURE.md; guide/curve/method only when the family has them.
REQUIRED_VERSION_TAGS = ("family", "dataset", "dataset_digest", "git_commit", "test_macro_f1", "test_mcs")
OPTIONAL_VERSION_TAGS = ("guide", "curve", "method")
METRIC_TAGS = ("test_macro_f1", "test_mcs")
_EPS = 1e-9  # metrics travel as decimal text: 0.7 vs 0.8 - 0.1 must count as equal
_FAMILY_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


class PromotionRefused(ValueError):
    """A promotion that the gates refuse; the message names both values being compared."""


def model_name(family: str) -> str:
    return f"zoo-{family}"


def previous_alias(alias: str) -> str:
    return PREVIOUS if alias == "production" else f"{PREVIOUS}_{alias}"


def _client():
    from mlflow.tracking import MlflowClient

    store.configure()
    return MlflowClient()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _as_float(name: str, value: Any, where: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} of {where} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} of {where} must be finite, got {value!r}")
    return out


# --------------------------------------------------------------------------------------------
# register
# --------------------------------------------------------------------------------------------
def register(run_id: str, family: str, model_uri: str, tags: Mapping[str, Any] | None = None,
             *, alias: str = CANDIDATE):
    """Register ``model_uri`` (``runs:/<id>/model``, ``models:/m-…`` or the ``model_uri`` of a
    ``log_model`` result) as a new version of ``zoo-<family>`` and point ``alias`` at it.

    Version tags: ``family``, ``guide``/``curve``/``method`` (when given), ``dataset``,
    ``dataset_digest``, ``git_commit``, ``test_macro_f1``, ``test_mcs``. Values in ``tags`` win;
    missing ones are read from the run (its tags, and its metrics ``test_macro_f1``/``test_mcs``).
    Raises ``ValueError`` naming what is missing before anything is written.
    """
    from mlflow.exceptions import MlflowException

    if not isinstance(family, str) or not _FAMILY_RE.match(family):
        raise ValueError(f"family must be a lowercase name like 'tml' or 'guided', got {family!r}")
    if not isinstance(model_uri, str) or not re.match(r"^[a-zA-Z][\w+.\-]*:", model_uri):
        raise ValueError(f"model_uri must be a URI such as runs:/<run_id>/model, got {model_uri!r}")
    client = _client()
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise ValueError(f"run {run_id!r} not found in {store.tracking_uri()}: {exc.message}") from None

    merged: dict[str, str] = {}
    for key in (*REQUIRED_VERSION_TAGS, *OPTIONAL_VERSION_TAGS):
        if key in run.data.tags:
            merged[key] = run.data.tags[key]
    for key in METRIC_TAGS:
        if key in run.data.metrics:
            merged[key] = repr(float(run.data.metrics[key]))
    merged["family"] = family
    for key, value in (tags or {}).items():
        if value is not None:
            merged[str(key)] = str(value)
    merged.setdefault("run_id", run_id)

    missing = [k for k in REQUIRED_VERSION_TAGS if not merged.get(k)]
    if missing:
        raise ValueError(
            f"cannot register run {run_id}: missing version tag(s) {missing}. Log them on the run "
            "(tags dataset/dataset_digest/git_commit via zoo.tracking.runs.start_run, metrics "
            "test_macro_f1/test_mcs via run.log_metrics(test_metrics, prefix='test_')) or pass "
            "them in tags=")
    for key in METRIC_TAGS:
        merged[key] = repr(_as_float(key, merged[key], f"run {run_id}"))
    if merged["family"] != family:
        raise ValueError(f"tag family={merged['family']!r} contradicts family={family!r}")
    _check_alias(alias, allowed=ALIASES)

    import mlflow

    try:  # the model must exist before anything is written
        mlflow.models.get_model_info(model_uri)
    except Exception as exc:
        raise ValueError(f"no MLflow model at {model_uri}: {str(exc).splitlines()[0]}") from None

    name = model_name(family)
    try:
        client.get_registered_model(name)
        is_new = False
    except MlflowException:
        is_new = True
    version = mlflow.register_model(model_uri, name, tags=merged)
    if is_new:
        client.set_registered_model_tag(name, "family", family)
        client.update_registered_model(
            name, description=f"marrow-zoo {family} pipelines; aliases: {', '.join(ALIASES)}")
    client.set_registered_model_alias(name, alias, version.version)
    return client.get_model_version(name, version.version)


# --------------------------------------------------------------------------------------------
# promote / rollback
# --------------------------------------------------------------------------------------------
def _check_alias(alias: str, allowed) -> None:
    if alias not in allowed:
        raise ValueError(f"alias must be one of {', '.join(allowed)}, got {alias!r}")


def _get_version(client, name: str, version: int | str):
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        names = [m.name for m in client.search_registered_models()]
        raise ValueError(f"no registered model {name!r}; registered: {', '.join(names) or 'none'}") from None
    try:
        return client.get_model_version(name, str(int(version)))
    except (MlflowException, ValueError, TypeError):
        raise ValueError(f"{name} has no version {version!r}; see `zoo models list {name}`") from None


def _holder(client, name: str, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _gate_values(mv, name: str) -> tuple[float, float, str | None]:
    where = f"{name} version {mv.version}"
    missing = [k for k in METRIC_TAGS if k not in mv.tags]
    if missing:
        raise PromotionRefused(f"{where} has no {missing} tag(s): it cannot be compared; "
                               "use force=True to promote it anyway")
    return (_as_float("test_macro_f1", mv.tags["test_macro_f1"], where),
            _as_float("test_mcs", mv.tags["test_mcs"], where),
            mv.tags.get("dataset_digest"))


def promote(model_name: str, version: int | str, alias: str = "production", tolerance: float = 0.0,
            force: bool = False, who: str | None = None, why: str = ""):
    """Point ``alias`` (``staging`` or ``production``) at ``version`` if it is not worse than the
    current holder on the same dataset digest; the old holder moves to ``previous`` (see
    :func:`previous_alias`). Records ``promoted_by``, ``promoted_at``, ``promotion_reason``,
    ``promoted_from_alias``, ``promoted_to_alias`` (and ``promotion_forced``) on the version.

    Raises :class:`PromotionRefused` (a ``ValueError``) with both values when a gate fails;
    ``force=True`` skips the gates (and is recorded). Returns the promoted ``ModelVersion``.
    """
    _check_alias(alias, allowed=PROMOTION_ALIASES)
    tolerance = _as_float("tolerance", tolerance, "the promotion")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    client = _client()
    mv = _get_version(client, model_name, version)
    if getattr(mv, "status", "READY") not in ("READY", None):
        raise ValueError(f"{model_name} version {mv.version} is {mv.status}, not READY")
    holder = _holder(client, model_name, alias)
    if holder is not None and str(holder.version) == str(mv.version):
        return mv  # already there: nothing to do, nothing rewritten

    if holder is not None and not force:
        f1, mcs, digest = _gate_values(mv, model_name)
        h_f1, h_mcs, h_digest = _gate_values(holder, model_name)
        cand, held = f"{model_name} v{mv.version}", f"v{holder.version} (@{alias})"
        if not digest or digest != h_digest:
            raise PromotionRefused(
                f"{cand} was evaluated on dataset digest {digest or 'unknown'} but {held} on "
                f"{h_digest or 'unknown'}: metrics are not comparable. Evaluate both on the same "
                "dataset, or use force=True")
        if f1 < h_f1 - tolerance - _EPS:
            raise PromotionRefused(
                f"{cand} has test macro-F {f1:.4f} < {h_f1:.4f} of {held} (tolerance {tolerance})")
        if mcs > h_mcs + tolerance + _EPS:
            raise PromotionRefused(
                f"{cand} has test MCS {mcs:.4f} > {h_mcs:.4f} of {held} (tolerance {tolerance}; "
                "lower MCS is better)")

    # All checks passed: write.
    rm = client.get_registered_model(model_name)
    from_aliases = sorted(a for a, v in (rm.aliases or {}).items() if str(v) == str(mv.version))
    tags = {
        "promoted_by": who or getpass.getuser(),
        "promoted_at": _now(),
        "promotion_reason": why or "",
        "promoted_from_alias": ",".join(from_aliases) or "none",
        "promoted_to_alias": alias,
        "promotion_forced": str(bool(force)).lower(),
        "replaced_version": str(holder.version) if holder is not None else "none",
    }
    for key, value in tags.items():
        client.set_model_version_tag(model_name, mv.version, key, str(value))
    if holder is not None:
        client.set_model_version_tag(model_name, holder.version, "replaced_by_version", str(mv.version))
        client.set_model_version_tag(model_name, holder.version, "replaced_at", tags["promoted_at"])
        client.set_registered_model_alias(model_name, previous_alias(alias), holder.version)
    client.set_registered_model_alias(model_name, alias, mv.version)
    return client.get_model_version(model_name, mv.version)


def rollback(model_name: str, alias: str = "production", who: str | None = None, why: str = ""):
    """Give ``alias`` back to the version holding ``previous`` (for production) and make the
    rolled-back version ``previous``, so a second rollback undoes the first. Tags both versions.
    Returns the restored ``ModelVersion``."""
    _check_alias(alias, allowed=PROMOTION_ALIASES)
    client = _client()
    try:
        client.get_registered_model(model_name)
    except Exception:
        raise ValueError(f"no registered model {model_name!r}") from None
    prev_alias = previous_alias(alias)
    current = _holder(client, model_name, alias)
    previous = _holder(client, model_name, prev_alias)
    if previous is None:
        raise ValueError(f"{model_name} has no @{prev_alias} version to roll back to")
    if current is None:
        raise ValueError(f"{model_name} has no @{alias} version to roll back")
    if str(current.version) == str(previous.version):
        raise ValueError(f"{model_name} @{alias} and @{prev_alias} are both version {current.version}")

    stamp, user = _now(), who or getpass.getuser()
    for key, value in {"rolled_back_to_alias": alias, "rolled_back_at": stamp, "rolled_back_by": user,
                       "rollback_reason": why or "", "replaced_version": str(current.version)}.items():
        client.set_model_version_tag(model_name, previous.version, key, value)
    for key, value in {"rolled_back_from_alias": alias, "rolled_back_at": stamp, "rolled_back_by": user,
                       "rollback_reason": why or "", "replaced_by_version": str(previous.version)}.items():
        client.set_model_version_tag(model_name, current.version, key, value)
    client.set_registered_model_alias(model_name, alias, previous.version)
    client.set_registered_model_alias(model_name, prev_alias, current.version)
    return client.get_model_version(model_name, previous.version)


# --------------------------------------------------------------------------------------------
# list
# --------------------------------------------------------------------------------------------
LIST_COLUMNS = ["name", "version", "aliases", "family", "dataset", "dataset_digest", "test_macro_f1",
                "test_mcs", "guide", "curve", "method", "git_commit", "promoted_by", "promoted_at",
                "run_id", "created"]


def list_models(name: str | None = None) -> pd.DataFrame:
    """One row per version of ``name`` (default: every ``zoo-*`` model), newest first, with its
    aliases and key tags."""
    from mlflow.exceptions import MlflowException

    client = _client()
    if name:
        try:
            models = [client.get_registered_model(name)]
        except MlflowException:
            raise ValueError(f"no registered model {name!r}") from None
    else:
        models = [m for m in client.search_registered_models(max_results=1000)
                  if m.name.startswith("zoo-")]
    rows = []
    for rm in models:
        by_version: dict[str, list[str]] = {}
        for a, v in (rm.aliases or {}).items():
            by_version.setdefault(str(v), []).append(a)
        for mv in client.search_model_versions(f"name='{rm.name}'", max_results=10000):
            t = mv.tags
            rows.append({
                "name": rm.name, "version": int(mv.version),
                "aliases": ",".join(sorted(by_version.get(str(mv.version), []))),
                **{k: t.get(k, "") for k in LIST_COLUMNS[3:14]},
                "run_id": mv.run_id or t.get("run_id", ""),
                "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, timezone.utc)
                .isoformat(timespec="seconds"),
            })
    df = pd.DataFrame(rows, columns=LIST_COLUMNS)
    for col in METRIC_TAGS:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df.sort_values(["name", "version"], ascending=[True, False]).reset_index(drop=True)
