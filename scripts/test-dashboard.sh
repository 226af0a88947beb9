#!/usr/bin/env bash
# The dashboard's test suite, twice: on SQLite (with the real-browser tests), then on a throwaway
# PostgreSQL 15 cluster from Debian's packages, listening only on a Unix socket in a temporary
# directory (no TCP port to choose, so no race with other processes for one) and stopped by
# pg_ctl (and by PID as a last resort) even when the tests fail or are interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv=${VENV:-.venv}
case $venv in /*) ;; *) venv=$root/$venv ;; esac
pytest=("$venv/bin/python" -m pytest -p no:cacheprovider)
pg_bin=/usr/lib/postgresql/15/bin

echo "== dashboard tests on SQLite (with browser tests)"
(cd files/dashboard && "${pytest[@]}" tests "$@")

[ -x "$pg_bin/initdb" ] || { echo "PostgreSQL 15 is missing: run 'make host'" >&2; exit 1; }
pg_dir=$(mktemp -d /tmp/altmesh-dashboard-pg.XXXXXX)
as_postgres=()
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$pg_dir"
  as_postgres=(runuser -u postgres --)
fi

stop_postgres() {
  if [ -f "$pg_dir/data/postmaster.pid" ]; then
    pid=$(head -n1 "$pg_dir/data/postmaster.pid")
    if ! "${as_postgres[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast -w -t 30 stop >/dev/null 2>&1; then
      kill -KILL "$pid" 2>/dev/null || true  # pg_ctl could not stop it: stop it by PID
    fi
  fi
  rm -rf "$pg_dir"
}
trap stop_postgres EXIT
trap 'exit 130' INT TERM  # so that the EXIT trap stops PostgreSQL on an interrupt too

"${as_postgres[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U postgres -A trust -E UTF8 \
  --no-instructions >"$pg_dir/initdb.log"
"${as_postgres[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/postgres.log" -w -t 60 \
  -o "-k $pg_dir -c listen_addresses='' -c fsync=off" start >/dev/null
echo "== dashboard tests on PostgreSQL 15 (Unix socket in $pg_dir)"
(cd files/dashboard && DASHBOARD_TEST_DATABASE_URL="postgresql+psycopg://postgres@/postgres?host=$pg_dir" \
  "${pytest[@]}" tests --ignore=tests/browser "$@")
