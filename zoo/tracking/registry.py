"""Model registry: versions of ``zoo-<family>``, aliases and gated promotion.

Aliases (never the deprecated stages): ``candidate`` (set on every registration), ``staging``,
``production`` and ``previous`` (the last holder of ``production``; for ``staging`` it is
``previous_staging``, so rolling back one alias never resurrects the other's old holder).

A promotion is a comparison of like with like: the candidate and the current holder must have
been tested on the same rows (version tag ``test_rows_digest``, a digest of the exact test rows;
with ``dataset_digest``, ``fold``, ``limit``, ``n_test`` for the record) and with the same primary
metric; the candidate's ``test_<primary_metric>`` must be no worse in the family's ``direction``
(by at most ``tolerance``) and, for families with classes, its ``test_mcs`` no higher than the
holder's (by at most ``tolerance``) — unless ``force`` (recorded). To compare across folds or
families, ``evaluate`` both on one dataset. Everything is validated before the first write, so a
refused or malformed request leaves the registry exactly as it was.
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
# Version tags (docs/families.md); guide/curve/method only when the family has them. The metric
# tags are test_<primary_metric> and, when the family has classes, test_mcs.
REQUIRED_VERSION_TAGS = ("family", "kind", "dataset", "dataset_digest", "git_commit", "fold", "limit", "n_test",
                         "test_rows_digest", "primary_metric")
OPTIONAL_VERSION_TAGS = ("guide", "curve", "method", "direction", "has_classes", "arch", "estimate", "cv_parent")
MCS = "test_mcs"
DIRECTIONS = ("maximize", "minimize")
_LABELS = {"macro_f1": "macro-F", "test_macro_f1": "macro-F", "test_mcs": "MCS"}
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


def _metric_keys(tags: Mapping[str, str]) -> list[str]:
    """The gate's metric tags: test_<primary_metric> (+ test_mcs when the family has classes)."""
    primary = f"test_{tags.get('primary_metric') or 'macro_f1'}"
    has_classes = str(tags.get("has_classes", "true")).lower() == "true"
    return [primary] + ([MCS] if has_classes and primary != MCS else [])


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
    merged["family"] = family
    for key, value in (tags or {}).items():
        if value is not None:
            merged[str(key)] = str(value)
    merged.setdefault("run_id", run_id)
    merged.setdefault("direction", "maximize")
    merged.setdefault("has_classes", "true")
    metric_keys = _metric_keys(merged)
    for key in metric_keys:
        if key not in merged and key in run.data.metrics:
            merged[key] = repr(float(run.data.metrics[key]))

    missing = [k for k in (*REQUIRED_VERSION_TAGS, *metric_keys) if not merged.get(k)]
    if missing:
        raise ValueError(
            f"cannot register run {run_id}: missing version tag(s) {missing}. Train through "
            "zoo.families (the runner tags fold/limit/n_test/test_rows_digest/kind/primary_metric), or log "
            "them on the run (dataset/dataset_digest/git_commit via zoo.tracking.runs.start_run, test metrics "
            "via run.log_metrics) or pass them in tags=")
    if merged["direction"] not in DIRECTIONS:
        raise ValueError(f"tag direction must be one of {DIRECTIONS}, got {merged['direction']!r}")
    for key in metric_keys:
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


def _gate_values(mv, name: str) -> dict[str, Any]:
    where = f"{name} version {mv.version}"
    t = mv.tags
    keys = _metric_keys(t)
    missing = [k for k in (*keys, "test_rows_digest") if k not in t]
    if missing:
        raise PromotionRefused(f"{where} has no {missing} tag(s) (registered before the gates knew them?): it "
                               "cannot be compared; evaluate both on one dataset, or use force=True")
    return {"metrics": {k: _as_float(k, t[k], where) for k in keys}, "primary": keys[0],
            "direction": t.get("direction", "maximize"), "digest": t.get("dataset_digest"),
            "rows": t.get("test_rows_digest"), "fold": t.get("fold", "?"), "limit": t.get("limit", "?"),
            "n_test": t.get("n_test", "?")}


def check_gates(cand: Mapping[str, Any], held: Mapping[str, Any], cand_name: str, held_name: str,
                tolerance: float = 0.0) -> None:
    """Raise :class:`PromotionRefused` unless ``cand`` (see :func:`_gate_values`) is comparable to
    and not worse than ``held``."""
    if cand["primary"] != held["primary"] or cand["direction"] != held["direction"]:
        raise PromotionRefused(f"{cand_name} is scored by {cand['primary']} ({cand['direction']}) but {held_name} by "
                               f"{held['primary']} ({held['direction']}): not comparable; use force=True")
    if not cand["digest"] or cand["digest"] != held["digest"]:
        raise PromotionRefused(
            f"{cand_name} was evaluated on dataset digest {cand['digest'] or 'unknown'} but {held_name} on "
            f"{held['digest'] or 'unknown'}: metrics are not comparable. Evaluate both on the same "
            "dataset, or use force=True")
    if cand["rows"] in (None, "", "none") or cand["rows"] != held["rows"]:
        raise PromotionRefused(
            f"{cand_name} was tested on other rows than {held_name}: test_rows_digest {cand['rows']} (fold "
            f"{cand['fold']}, limit {cand['limit']}, {cand['n_test']} rows) vs {held['rows']} (fold {held['fold']}, "
            f"limit {held['limit']}, {held['n_test']} rows). Compare like with like: `zoo evaluate` both on one "
            "dataset, or use force=True")
    key = cand["primary"]
    c, h = cand["metrics"][key], held["metrics"][key]
    label = _LABELS.get(key, key)
    if cand["direction"] == "maximize" and c < h - tolerance - _EPS:
        raise PromotionRefused(f"{cand_name} has test {label} {c:.4f} < {h:.4f} of {held_name} (tolerance {tolerance})")
    if cand["direction"] == "minimize" and c > h + tolerance + _EPS:
        raise PromotionRefused(f"{cand_name} has test {label} {c:.4f} > {h:.4f} of {held_name} (tolerance "
                               f"{tolerance}; lower is better)")
    if MCS in cand["metrics"] and MCS in held["metrics"] and MCS != key:
        c, h = cand["metrics"][MCS], held["metrics"][MCS]
        if c > h + tolerance + _EPS:
            raise PromotionRefused(f"{cand_name} has test MCS {c:.4f} > {h:.4f} of {held_name} (tolerance "
                                   f"{tolerance}; lower MCS is better)")


def promote(model_name: str, version: int | str, alias: str = "production", tolerance: float = 0.0,
            force: bool = False, who: str | None = None, why: str = ""):
    """Point ``alias`` (``staging`` or ``production``) at ``version`` if it is not worse than the
    current holder on the same test rows (:func:`check_gates`); the old holder moves to ``previous`` (see
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
        check_gates(_gate_values(mv, model_name), _gate_values(holder, model_name), f"{model_name} v{mv.version}",
                    f"v{holder.version} (@{alias})", tolerance)

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
    if current is None or previous is None:  # say exactly which alias is missing, and what fixes it
        missing = " and ".join(f"@{a}" for a, mv in ((alias, current), (prev_alias, previous)) if mv is None)
        raise ValueError(f"{model_name} has no {missing} version, so there is nothing to roll back "
                         f"(rollback gives @{alias} back to the @{prev_alias} version, which a second "
                         f"`zoo models promote` sets); see `zoo models list {model_name}`")
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
                "test_mcs", "guide", "curve", "method", "git_commit", "promoted_by", "fold", "limit",
                "test_rows_digest", "primary_metric", "kind", "promoted_at", "run_id", "created"]


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
                **{k: t.get(k, "") for k in LIST_COLUMNS[3:19]},
                "run_id": mv.run_id or t.get("run_id", ""),
                "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, timezone.utc)
                .isoformat(timespec="seconds"),
            })
    df = pd.DataFrame(rows, columns=LIST_COLUMNS)
    for col in ("test_macro_f1", MCS):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df.sort_values(["name", "version"], ascending=[True, False]).reset_index(drop=True)
