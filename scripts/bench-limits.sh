#!/usr/bin/env bash
# Slot handoff figures on SQLite and on a throwaway PostgreSQL 15 cluster (started here, on a
# free port, and removed at the end): `cargo bench -p flowkit-server --bench limits`.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=/usr/lib/postgresql/15/bin
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$dir"
as_postgres "$BIN/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
as_postgres "$BIN/pg_ctl" -D "$dir/data" -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" \
    -l "$dir/log" -w start >/dev/null
trap 'as_postgres "$BIN/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1; rm -rf "$dir"' EXIT
psql -h 127.0.0.1 -p "$port" -U postgres -qc 'CREATE DATABASE bench'
FLOWKIT_BENCH_DATABASE_URL="postgres://postgres@127.0.0.1:$port/bench" \
    cargo bench -p flowkit-server --bench limits "$@"
