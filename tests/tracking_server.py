"""A production-shaped MLflow tracking server for tests, started by ``scripts/server.sh`` (the
script users run) on the throwaway PostgreSQL of tests/postgres_server.py, on loopback.

```python
from postgres_server import postgres_server  # noqa: F401  (the fixture this one needs)
from tracking_server import tracking_server  # noqa: F401

def test_x(tracking_server):
    uri, state = tracking_server      # http://127.0.0.1:<port>, the server's state folder
```

The script creates the role and database, runs ``mlflow db upgrade`` and starts ``mlflow server``
with proxied artifacts under ``state/artifacts``; the fixture stops it (``server.sh stop``) and
checks it is gone. Skipped with the reason when PostgreSQL cannot run (see postgres_server).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from postgres_server import _free_port

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "server.sh"


@pytest.fixture
def tracking_server(postgres_server, tmp_path):
    state = tmp_path / "server"
    env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(postgres_server.port), "PGUSER": "zoo",
           "ZOO_SERVER_DIR": str(state), "ZOO_SERVER_PORT": str(_free_port()), "ZOO_SERVER_WORKERS": "1",
           # one database per test: the session's PostgreSQL is shared by several tests
           "ZOO_DB_NAME": f"mlflow_{tmp_path.name.lower().replace('-', '_')[:40]}"}
    start = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=300)
    try:
        assert start.returncode == 0, start.stderr[-3000:]
        yield start.stdout.strip(), state
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=60)
    assert not (state / "server.pid").exists()
