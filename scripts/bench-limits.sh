#!/usr/bin/env bash
# Slot handoff figures on SQLite and on a throwaway PostgreSQL 15 cluster (started here, on a
# free port, and removed at the end): `cargo bench -p flowkit-server --bench limits`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/throwaway-postgres.sh
cargo bench -p flowkit-server --bench limits "$@"
