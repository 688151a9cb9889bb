"""A throwaway PostgreSQL server on loopback for tests (tuning workers, tracking server).

```python
from postgres_server import postgres_server, postgres_url  # pytest fixtures (session / function)

def test_x(postgres_url):          # a fresh, empty database on a session-wide server
    ...
def test_y(postgres_server):       # the server: .url(db), .create_database(name), .port
    ...
```

Uses Debian's ``postgresql`` package (``apt-get install -y postgresql``): ``initdb`` makes a
cluster in a temporary folder, ``pg_ctl`` starts it listening on 127.0.0.1 only (trust auth, no
password; the Unix socket in the same folder) and stops it (``-m immediate``) at the end of the
session. PostgreSQL refuses to run as root, so under root the cluster belongs to the ``postgres``
system user and the binaries run through ``runuser``. Tests are skipped, with the reason, when the
binaries, the ``postgres`` user or the psycopg2 driver are missing or the server does not start.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

USER = "zoo"


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One cluster; ``start()`` raises ``RuntimeError`` with the reason when it cannot run."""

    def __init__(self) -> None:
        self.tmp: Path | None = None
        self.port = 0
        self._prefix: list[str] = []
        self.started = False

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run([*self._prefix, *cmd], capture_output=True, text=True, timeout=120)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed: {(out.stderr or out.stdout).strip()[-600:]}")
        return out

    def start(self) -> "PostgresServer":
        tools = {n: _bin(n) for n in ("initdb", "pg_ctl", "createdb")}
        missing = [n for n, p in tools.items() if p is None]
        if missing:
            raise RuntimeError(f"PostgreSQL binaries not found ({', '.join(missing)}): apt-get install -y postgresql")
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            raise RuntimeError("psycopg2 is not installed: pip install psycopg2-binary") from None
        self.tmp = Path(tempfile.mkdtemp(prefix="zoo-pg-"))
        if os.geteuid() == 0:  # initdb/postgres refuse root: run as the package's system user
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and there is no 'postgres' user to own the cluster") from None
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
            self._prefix = ["runuser", "-u", "postgres", "--"]
        data = self.tmp / "data"
        self._run(tools["initdb"], "-D", str(data), "-A", "trust", "-U", USER, "--no-sync", "-E", "UTF8")
        self.port = _free_port()
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.tmp} -F -c fsync=off -c max_connections=60"
        self._run(tools["pg_ctl"], "-D", str(data), "-o", opts, "-l", str(self.tmp / "server.log"), "-w",
                  "-t", "60", "start")
        self.started = True
        self._createdb = tools["createdb"]
        return self

    def create_database(self, name: str | None = None) -> str:
        """Create a database and return its SQLAlchemy URL."""
        name = name or f"t_{uuid.uuid4().hex[:10]}"
        self._run(self._createdb, "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name)
        return self.url(name)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://{USER}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.started and self.tmp is not None:
            self._run(_bin("pg_ctl"), "-D", str(self.tmp / "data"), "-m", "immediate", "-w", "stop", check=False)
            self.started = False
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer()
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        server.stop()
        pytest.skip(f"no PostgreSQL server on loopback: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh database for one test."""
    return postgres_server.create_database()
