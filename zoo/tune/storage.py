"""Where a study lives: one ``storage`` string, three shapes, all Optuna's own storages.

==============================  =================================================================
``storage``                     what it opens
==============================  =================================================================
(empty / ``default``)           ``sqlite:///<project>/optuna.db`` — beside the MLflow store; one
                                worker (SQLite locks the whole file, so a few local workers work
                                but contend)
``journal:<path>``              :class:`optuna.storages.JournalStorage` on a
                                :class:`~optuna.storages.journal.JournalFileBackend` (append-only
                                log with file locks): several processes on one machine
``postgresql://user@host/db``   :class:`optuna.storages.RDBStorage`: workers on several machines
``sqlite:///path``, ``mysql…``  :class:`optuna.storages.RDBStorage`
==============================  =================================================================

RDB storages get heartbeats: a worker that dies mid-trial (SIGKILL, lost machine) stops beating,
and the next worker to start a trial marks it failed and re-queues its parameters once
(:class:`optuna.storages.RetryHeartbeatStaleTrialCallback`, ``max_retry=1``). Optuna's journal
storage has no heartbeat; on it, :func:`fail_dead_local_trials` does the same for trials whose
worker ran on *this* host and whose process no longer exists.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

DEFAULT_FILE = "optuna.db"
JOURNAL_PREFIX = "journal:"
RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")
# Beats every 10 s, declared dead after 60 s of silence: a trial epoch may block the GIL-holding
# heartbeat thread for a while on a loaded CPU, so the grace period is generous.
HEARTBEAT_INTERVAL = 10
GRACE_PERIOD = 60
MAX_RETRY = 1

StaleCallback = Callable[[Any, Any], None]


@dataclass(frozen=True)
class StorageSpec:
    kind: str          # "rdb" | "journal"
    url: str           # SQLAlchemy URL (rdb) or the journal file path
    display: str       # for logs and run tags: the password masked

    @property
    def has_heartbeat(self) -> bool:
        return self.kind == "rdb"


def default_storage_url() -> str:
    """``sqlite:///<project>/optuna.db``: the study beside the project's MLflow store."""
    from zoo.paths import project_dir

    return f"sqlite:///{(project_dir() / DEFAULT_FILE).as_posix()}"


def mask_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def parse_storage(text: str | None) -> StorageSpec:
    """Recognise a ``storage`` parameter; a malformed one fails naming the three valid forms."""
    raw = "" if text is None else str(text).strip()
    if raw.lower() in ("", "default", "auto", "none"):
        url = default_storage_url()
        return StorageSpec("rdb", url, url)
    if raw.startswith(JOURNAL_PREFIX):
        path = raw[len(JOURNAL_PREFIX):].strip()
        if not path:
            raise ValueError("storage 'journal:' needs a file path, e.g. -P storage=journal:studies/guided.log")
        resolved = Path(path).expanduser().resolve()
        return StorageSpec("journal", str(resolved), f"journal:{resolved}")
    scheme = urlsplit(raw).scheme.split("+")[0].lower()
    if scheme in RDB_SCHEMES:
        url = "postgresql" + raw[len("postgres"):] if raw.startswith("postgres://") else raw
        return StorageSpec("rdb", url, mask_password(url))
    raise ValueError(
        f"storage {mask_password(raw)!r} is not one the tuner can open. Use one of: nothing (default: "
        f"{default_storage_url()}), journal:<path> (several workers on one machine), "
        "postgresql://user:password@host:5432/db (workers on several machines), sqlite:///<path>")


def open_storage(spec: StorageSpec | str | None, *, on_stale: StaleCallback | None = None,
                 heartbeat_interval: int | None = None, grace_period: int | None = None):
    """Open (and create) the storage; ``on_stale(study, frozen_trial)`` runs for a trial whose
    worker died, before the trial is re-queued. Errors name the storage and the fix.

    Heartbeat interval / grace period (seconds): arguments, else ``$ZOO_TUNE_HEARTBEAT`` /
    ``$ZOO_TUNE_GRACE``, else 10 / 60."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    if not isinstance(spec, StorageSpec):
        spec = parse_storage(spec)
    if spec.kind == "journal":
        from optuna.storages.journal import JournalFileBackend

        path = Path(spec.url)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        except OSError as exc:
            raise ValueError(f"cannot open journal storage {path}: {exc}. Pass a writable file path, "
                             "e.g. -P storage=journal:studies/<study>.log") from None

    heartbeat_interval = int(heartbeat_interval or os.environ.get("ZOO_TUNE_HEARTBEAT") or HEARTBEAT_INTERVAL)
    grace_period = int(grace_period or os.environ.get("ZOO_TUNE_GRACE") or GRACE_PERIOD)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)

    def stale(study, trial) -> None:
        if on_stale is not None:
            try:
                on_stale(study, trial)
            except Exception as exc:  # marking the dead trial's run must not stop the live worker
                log.warning("could not mark the run of dead trial %d: %s", trial.number, exc)
        log.warning("trial %d of study %r lost its worker (no heartbeat for %d s): marked failed%s",
                    trial.number, study.study_name, grace_period,
                    "" if retried_count(trial) >= MAX_RETRY else ", its parameters queued again")
        retry(study, trial)

    if spec.url.startswith("sqlite:///"):
        Path(spec.url[len("sqlite:///"):]).expanduser().parent.mkdir(parents=True, exist_ok=True)
    # pool_pre_ping: a worker idle through a long trial finds its pooled connection closed by the
    # server; pre-ping reconnects instead of failing the tell() at the end of the trial.
    engine_kwargs = {} if spec.url.startswith("sqlite") else {"pool_pre_ping": True}
    error: Exception | None = None
    for attempt in range(4):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    spec.url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period, heartbeat_stale_trial_callback=stale)
        except Exception as exc:  # sqlalchemy/driver errors come in many classes
            # Workers starting together on an empty database race to create Optuna's tables; the
            # loser sees "duplicate key"/"already exists" and finds the tables there on a retry.
            error = exc
            text = str(exc).lower()
            if attempt < 3 and any(k in text for k in ("duplicate key", "already exists", "unique constraint",
                                                       "database is locked")):
                time.sleep(1.0 + attempt)
                continue
            break
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    hint = ("install the driver: pip install psycopg2-binary" if "no module named 'psycopg2'" in str(error).lower()
            else "check host, port, user, password and that the database exists "
                 "(createdb <db>); or use -P storage=journal:<path> on one machine")
    raise ValueError(f"cannot open storage {spec.display}: {first}. Fix: {hint}") from None


def retried_count(trial) -> int:
    return len(trial.system_attrs.get("retry_history", []))


def worker_id() -> str:
    """``<host>-<pid>``: names a worker's parent run and lets the journal storage recognise
    trials whose process is gone."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def fail_dead_local_trials(study, on_stale: StaleCallback | None = None) -> list[int]:
    """For storages without heartbeat (journal): mark failed the RUNNING trials started on this
    host by a process that no longer exists, and re-queue their parameters once — what the RDB
    heartbeat does. Trials of other hosts are left alone (their liveness cannot be seen here)."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    host = socket.gethostname()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(trial.user_attrs.get("worker", ""))
        w_host, _, pid = worker.rpartition("-")
        if w_host != host or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        try:
            frozen = study.tell(trial.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker got there first
        if on_stale is not None:
            try:
                on_stale(study, frozen)
            except Exception as exc:
                log.warning("could not mark the run of dead trial %d: %s", trial.number, exc)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, frozen)
        log.warning("trial %d of study %r: its worker %s is gone; marked failed and queued again",
                    trial.number, study.study_name, worker)
        failed.append(trial.number)
    return failed
