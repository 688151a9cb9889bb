#!/usr/bin/env bash
# The MLflow tracking server in its production shape, on loopback: PostgreSQL as the backend store
# (runs + model registry) and proxied artifacts (clients upload and download through the server,
# so they need no access to the artifact store; experiments get `mlflow-artifacts:/<id>` locations).
#
#   bash scripts/server.sh start     # role + database, `mlflow db upgrade`, server; prints the URI
#   bash scripts/server.sh stop      # stops the server this script started (PostgreSQL keeps running)
#   bash scripts/server.sh status
#   export MLFLOW_TRACKING_URI=$(bash scripts/server.sh uri)
#
# PostgreSQL: an existing server. With PGHOST/PGPORT/PGUSER set (libpq's variables), that admin role
# creates the role and database; without PGHOST, the local Debian cluster is used through its Unix
# socket as the `postgres` system user (`apt-get install postgresql && service postgresql start`).
#
# Settings (environment, defaults in brackets):
#   ZOO_SERVER_DIR      state: pid, log, password file, local artifacts   [<project>/.server]
#   ZOO_SERVER_PORT     port of the MLflow server on 127.0.0.1            [5000]
#   ZOO_SERVER_WORKERS  server worker processes                           [2]
#   ZOO_DB_NAME / ZOO_DB_USER                                             [mlflow / mlflow]
#   ZOO_ARTIFACTS_DESTINATION  where the server stores artifacts          [$ZOO_SERVER_DIR/artifacts]
#                              (e.g. s3://bucket/zoo with AWS credentials in the server's environment)
# The database password is generated once into $ZOO_SERVER_DIR/pgpass (mode 600, libpq's pgpass
# format) and handed to the server as PGPASSFILE, so it never appears in a URI or a process list.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${ZOO_SERVER_DIR:-$ROOT/.server}"
PORT="${ZOO_SERVER_PORT:-5000}"
WORKERS="${ZOO_SERVER_WORKERS:-2}"
DB="${ZOO_DB_NAME:-mlflow}"
DB_USER="${ZOO_DB_USER:-mlflow}"
DEST="${ZOO_ARTIFACTS_DESTINATION:-$STATE/artifacts}"
PG_HOST="${PGHOST:-127.0.0.1}"
PG_PORT="${PGPORT:-5432}"
URI="http://127.0.0.1:$PORT"
MLFLOW="${ZOO_VENV:-$ROOT/.venv}/bin/mlflow"
[ -x "$MLFLOW" ] || MLFLOW="$(command -v mlflow || true)"
PYTHON="$(dirname "${MLFLOW:-/usr/bin/python3}")/python"
[ -x "$PYTHON" ] || PYTHON=python3

die() { echo "server.sh: $*" >&2; exit 1; }

admin_psql() {  # psql as a role that may create roles and databases
  if [ -n "${PGHOST:-}" ]; then
    psql -v ON_ERROR_STOP=1 -X -q -d postgres "$@"
  elif [ "$(id -u)" = 0 ]; then
    (cd / && runuser -u postgres -- psql -v ON_ERROR_STOP=1 -X -q -d postgres "$@")
  else
    psql -v ON_ERROR_STOP=1 -X -q -d postgres "$@"
  fi
}

running() { [ -f "$STATE/server.pid" ] && kill -0 "$(cat "$STATE/server.pid")" 2>/dev/null; }

start() {
  [ -n "$MLFLOW" ] || die "mlflow not found: run scripts/setup.sh (or set ZOO_VENV)"
  command -v psql >/dev/null || die "psql not found: apt-get install -y postgresql-client"
  if running; then echo "$URI"; return 0; fi
  mkdir -p "$STATE"
  chmod 700 "$STATE"
  admin_psql -tAc "SELECT 1" >/dev/null 2>&1 || die "cannot reach PostgreSQL as an admin role \
(PGHOST=${PGHOST:-<local socket>} PGPORT=$PG_PORT PGUSER=${PGUSER:-postgres}): start it \
(service postgresql start) or set PGHOST/PGPORT/PGUSER to a role that may create roles and databases"

  # 1. role and database (idempotent; the password is generated once and kept in the pgpass file)
  if [ ! -s "$STATE/pgpass" ]; then
    pw="$("$PYTHON" -c 'import secrets; print(secrets.token_hex(16))')"
    umask 077
    echo "*:*:$DB:$DB_USER:$pw" > "$STATE/pgpass"
  fi
  pw="$(cut -d: -f5 "$STATE/pgpass")"
  if [ "$(admin_psql -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'")" = 1 ]; then
    admin_psql -c "ALTER ROLE \"$DB_USER\" LOGIN PASSWORD '$pw'"
  else
    admin_psql -c "CREATE ROLE \"$DB_USER\" LOGIN PASSWORD '$pw'"
  fi
  if [ "$(admin_psql -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
    admin_psql -c "CREATE DATABASE \"$DB\" OWNER \"$DB_USER\""
  fi

  # 2. schema: create or migrate MLflow's tables to this MLflow version
  export PGPASSFILE="$STATE/pgpass"
  local store="postgresql+psycopg2://$DB_USER@$PG_HOST:$PG_PORT/$DB"
  "$MLFLOW" db upgrade "$store" >"$STATE/db-upgrade.log" 2>&1 \
    || die "mlflow db upgrade failed, see $STATE/db-upgrade.log: $(tail -3 "$STATE/db-upgrade.log")"

  # 3. the server, in its own session so `stop` ends it and its workers as one process group
  case "$DEST" in *://*) ;; *) mkdir -p "$DEST" ;; esac
  MLFLOW_DISABLE_TELEMETRY=true setsid "$MLFLOW" server --backend-store-uri "$store" \
    --artifacts-destination "$DEST" --serve-artifacts --host 127.0.0.1 --port "$PORT" \
    --workers "$WORKERS" >"$STATE/server.log" 2>&1 < /dev/null &
  echo $! > "$STATE/server.pid"
  for _ in $(seq 1 240); do
    if "$PYTHON" -c "import urllib.request,sys; urllib.request.urlopen('$URI/health', timeout=2)" 2>/dev/null; then
      echo "$URI"
      return 0
    fi
    running || die "the server exited, see $STATE/server.log: $(tail -5 "$STATE/server.log")"
    sleep 0.5
  done
  stop >/dev/null
  die "the server did not answer $URI/health within 120 s, see $STATE/server.log"
}

stop() {
  if ! running; then echo "not running"; rm -f "$STATE/server.pid"; return 0; fi
  local pid; pid="$(cat "$STATE/server.pid")"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -0 "$pid" 2>/dev/null && kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$STATE/server.pid"
  echo "stopped $URI"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running; then echo "running $URI (pid $(cat "$STATE/server.pid"))"; else echo "not running"; exit 1; fi ;;
  uri) echo "$URI" ;;
  *) echo "usage: $0 start|stop|status|uri   (settings: see the header of $0)" >&2; exit 2 ;;
esac
