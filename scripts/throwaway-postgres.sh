# Sourced by the bench scripts: starts a throwaway PostgreSQL 15 cluster on a free port, stopped
# and removed when the sourcing script exits, with an empty database `bench`, and exports its
# address as FLOWKIT_BENCH_DATABASE_URL.
#   . "$(dirname "$0")/throwaway-postgres.sh"
BIN=/usr/lib/postgresql/15/bin
pg_dir=$(mktemp -d)
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$pg_dir"
trap 'as_postgres "$BIN/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1; rm -rf "$pg_dir"' EXIT
as_postgres "$BIN/initdb" -D "$pg_dir/data" -A trust -U postgres >/dev/null
as_postgres "$BIN/pg_ctl" -D "$pg_dir/data" \
    -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c max_connections=200" \
    -l "$pg_dir/log" -w start >/dev/null
psql -h 127.0.0.1 -p "$pg_port" -U postgres -qc 'CREATE DATABASE bench'
export FLOWKIT_BENCH_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/bench"
