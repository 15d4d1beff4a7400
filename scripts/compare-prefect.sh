#!/usr/bin/env bash
# Compare flowkit's per-task overhead with Prefect 3 on this machine.
#
# Runs the same no-op workloads (seq, map, retry) on both sides:
#   flowkit: cargo bench --bench overhead -- <case> <N>
#            -> `flowkit <case> n=<N> per_task_us=<f> baseline_us=<f> ratio_to_baseline=<f> peak_bytes_per_task=<f>`
#   Prefect: python prefect_peer.py <case> <N>   (the peer's script, kept outside this repo)
#            -> `prefect <case> n=<N> per_task_us=<f> tasks_per_s=<f> cold_first_flow_s=<f>`
# and prints a table with the speedup (prefect us/task / flowkit us/task).
#
# Usage: scripts/compare-prefect.sh [--quick] [--seq N] [--map N] [--retry N]
#                                   [--cases seq,map,retry] [--prefect-only] [-h|--help]
#
#   --quick          sizes seq=200 map=200 retry=100 (default: seq=1000 map=1000 retry=300)
#   --seq/--map/--retry N   size for one case (applied after --quick, whatever the order)
#   --cases LIST     comma-separated subset of seq,map,retry to run (default: all three)
#   --prefect-only   skip the flowkit side (no cargo); the flowkit columns show "-"
#
# Environment:
#   PREFECT_PEER   path to prefect_peer.py. Default: ../shared/bench/prefect_peer.py relative to
#                  the repo root. A relative value you set is taken relative to your current dir.
#   PREFECT_VENV   throwaway virtualenv for Prefect (default /tmp/flowkit-prefect-venv). Reused if
#                  prefect==3.9.1 is already installed there; created/installed into otherwise.
#   PYTHON         interpreter used to create the venv (default python3).
#   CARGO          cargo executable (default cargo).
#   PREFECT_LOGGING_LEVEL etc. are passed through to Prefect if you set them (the default run uses
#                  Prefect's defaults, i.e. an INFO log line per task run, as a user would get).
#
# Prefect runs locally with no server configured: with no PREFECT_API_URL the client starts a
# temporary local server subprocess (SQLite) itself. Each case gets a fresh PREFECT_HOME in a temp
# dir, so every case's cold_first_flow_s includes the same start-up (imports, server start, DB
# migrations, first flow). Anonymous telemetry is switched off (it also caused "database is
# locked" errors against the freshly migrated SQLite DB).
#
# The "prefect peak RSS" column is the peak of the summed resident set size of the peer's process
# tree (Python client + temporary server subprocess), sampled every 0.2 s from /proc.

set -euo pipefail

PREFECT_VERSION=3.9.1

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { printf 'compare-prefect: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'compare-prefect: %s\n' "$*" >&2; }

ORIG_PWD=$PWD
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

# ---------------------------------------------------------------- arguments
declare -A SIZE=([seq]=1000 [map]=1000 [retry]=300)
declare -A OVERRIDE=()
CASES=(seq map retry)
QUICK=0
PREFECT_ONLY=0

is_pos_int() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

while (($#)); do
  case $1 in
    --quick) QUICK=1 ;;
    --seq|--map|--retry)
      (($# >= 2)) || die "$1 needs a value"
      is_pos_int "$2" || die "$1 expects a positive integer, got '$2'"
      OVERRIDE[${1#--}]=$2
      shift ;;
    --seq=*|--map=*|--retry=*)
      k=${1%%=*}; v=${1#*=}
      is_pos_int "$v" || die "$k expects a positive integer, got '$v'"
      OVERRIDE[${k#--}]=$v ;;
    --cases)
      (($# >= 2)) || die "--cases needs a value"
      IFS=, read -r -a CASES <<<"$2"
      shift ;;
    --cases=*) IFS=, read -r -a CASES <<<"${1#*=}" ;;
    --prefect-only) PREFECT_ONLY=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

((${#CASES[@]})) || die "--cases is empty"
for c in "${CASES[@]}"; do
  [[ $c == seq || $c == map || $c == retry ]] || die "unknown case '$c' (expected seq, map or retry)"
done
if ((QUICK)); then SIZE=([seq]=200 [map]=200 [retry]=100); fi
for k in "${!OVERRIDE[@]}"; do SIZE[$k]=${OVERRIDE[$k]}; done

# ---------------------------------------------------------------- peer script
if [[ -n ${PREFECT_PEER:-} ]]; then
  PEER=$PREFECT_PEER
  [[ $PEER == /* ]] || PEER=$ORIG_PWD/$PEER
else
  PEER=$REPO_ROOT/../shared/bench/prefect_peer.py
fi
[[ -f $PEER ]] || die "Prefect peer script not found at '$PEER'.
  It lives outside this repo (the peer's side); set PREFECT_PEER=/path/to/prefect_peer.py."
PEER=$(cd "$(dirname "$PEER")" && pwd)/$(basename "$PEER")

# ---------------------------------------------------------------- scratch space
WORK=$(mktemp -d "${TMPDIR:-/tmp}/flowkit-compare-prefect.XXXXXX")
KEEP_WORK=0
cleanup() {
  if ((KEEP_WORK)); then log "logs kept in $WORK"; else rm -rf -- "$WORK"; fi
}
trap cleanup EXIT

show_log_tail() {  # $1 = log file, $2 = what
  KEEP_WORK=1
  log "$2 failed; last lines of its output ($1):"
  tail -n 40 -- "$1" >&2 || true
}

# ---------------------------------------------------------------- parsing
# field LINE KEY -> prints the value of KEY=<value> in LINE (fails if absent)
field() {
  local key=$2 tok toks
  read -r -a toks <<<"$1"
  for tok in "${toks[@]}"; do
    if [[ $tok == "$key="* ]]; then printf '%s\n' "${tok#*=}"; return 0; fi
  done
  return 1
}

# result_line TOOL CASE N FILE -> the single `TOOL CASE n=N ...` line from FILE (fails if absent)
result_line() {
  local tool=$1 case=$2 n=$3 file=$4 line
  line=$(grep -E "^${tool} ${case} n=${n}( |\$)" -- "$file" | tail -n 1) || return 1
  [[ -n $line ]] || return 1
  printf '%s\n' "$line"
}

is_float() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]]; }

CARGO_BIN=${CARGO:-cargo}
if ((!PREFECT_ONLY)); then
  command -v "$CARGO_BIN" >/dev/null 2>&1 || die "'$CARGO_BIN' not found (use --prefect-only to skip flowkit)"
fi

# ---------------------------------------------------------------- Prefect venv
VENV=${PREFECT_VENV:-/tmp/flowkit-prefect-venv}
[[ $VENV == /* ]] || VENV=$ORIG_PWD/$VENV
VPY=$VENV/bin/python

prefect_ok() {
  [[ -x $VPY ]] && "$VPY" - "$PREFECT_VERSION" <<'EOF' >/dev/null 2>&1
import sys, importlib.metadata as m
sys.exit(0 if m.version("prefect") == sys.argv[1] else 1)
EOF
}

if prefect_ok; then
  log "reusing Prefect $PREFECT_VERSION venv at $VENV"
else
  if [[ ! -x $VPY ]]; then
    if [[ -e $VENV && ! -f $VENV/pyvenv.cfg && -n $(ls -A -- "$VENV" 2>/dev/null) ]]; then
      die "PREFECT_VENV='$VENV' exists, is not empty and is not a virtualenv; refusing to touch it"
    fi
    log "creating virtualenv $VENV"
    "${PYTHON:-python3}" -m venv --clear "$VENV" || die "could not create a virtualenv at $VENV"
  fi
  log "installing prefect==$PREFECT_VERSION into $VENV (may take a few minutes)"
  "$VPY" -m pip install --disable-pip-version-check -q "prefect==$PREFECT_VERSION" \
    || die "pip install prefect==$PREFECT_VERSION failed"
  prefect_ok || die "prefect $PREFECT_VERSION still not importable from $VPY"
fi

# ---------------------------------------------------------------- runners
# run_prefect CASE N -> sets P_LINE, P_RSS_KB
run_prefect() {
  local case=$1 n=$2 home out errlog rssf
  home=$(mktemp -d "$WORK/prefect-home.$case.XXXXXX")
  out=$WORK/prefect.$case.out errlog=$WORK/prefect.$case.err rssf=$WORK/prefect.$case.rss
  # Run from inside the fresh PREFECT_HOME so no prefect.toml / .env / pyproject.toml in the
  # caller's tree can change settings. The wrapper samples the summed RSS of the peer's whole
  # process tree (client + temporary server) every 0.2 s and records the peak, in KiB.
  if ! (
    cd "$home"
    unset PREFECT_API_URL PREFECT_API_KEY PREFECT_API_AUTH_STRING PREFECT_PROFILE PREFECT_PROFILES_PATH
    export PREFECT_HOME=$home \
      PREFECT_SERVER_ANALYTICS_ENABLED=false \
      DO_NOT_TRACK=1 \
      PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=${PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS:-180}
    "$VPY" - "$rssf" "$VPY" "$PEER" "$case" "$n" >"$out" 2>"$errlog" <<'EOF'
import os, subprocess, sys, time

out_file, cmd = sys.argv[1], sys.argv[2:]
proc = subprocess.Popen(cmd)


def tree_rss_kib(root):
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, ()))
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next((int(l.split()[1]) for l in f if l.startswith("VmRSS:")), 0)
        except OSError:
            pass
    return total


peak = 0
while proc.poll() is None:
    peak = max(peak, tree_rss_kib(proc.pid))
    time.sleep(0.2)
with open(out_file, "w") as f:
    f.write(str(peak))
sys.exit(proc.returncode)
EOF
  ); then
    cat -- "$out" >>"$errlog"
    show_log_tail "$errlog" "Prefect run ($case n=$n)"
    exit 1
  fi
  P_LINE=$(result_line prefect "$case" "$n" "$out") || {
    cat -- "$out" >>"$errlog"; show_log_tail "$errlog" "parsing Prefect's result line ($case n=$n)"; exit 1; }
  P_RSS_KB=$(cat -- "$rssf" 2>/dev/null || echo "")
}

# run_flowkit CASE N -> sets F_LINE
run_flowkit() {
  local case=$1 n=$2 out=$WORK/flowkit.$1.out errlog=$WORK/flowkit.$1.err
  if ! "$CARGO_BIN" bench --bench overhead -- "$case" "$n" >"$out" 2>"$errlog"; then
    cat -- "$out" >>"$errlog"
    show_log_tail "$errlog" "cargo bench --bench overhead -- $case $n"
    exit 1
  fi
  F_LINE=$(result_line flowkit "$case" "$n" "$out") || {
    cat -- "$out" >>"$errlog"
    show_log_tail "$errlog" "finding 'flowkit $case n=$n ...' in the bench's stdout"; exit 1; }
}

# ---------------------------------------------------------------- build flowkit once, up front
if ((!PREFECT_ONLY)); then
  log "building the flowkit overhead bench (cargo bench --bench overhead --no-run)"
  "$CARGO_BIN" bench --bench overhead --no-run || die "building the overhead bench failed"
fi

# ---------------------------------------------------------------- run
ROWS=()
RAW=()
for case in "${CASES[@]}"; do
  n=${SIZE[$case]}
  f_us=-
  if ((!PREFECT_ONLY)); then
    log "flowkit $case n=$n ..."
    run_flowkit "$case" "$n"
    RAW+=("$F_LINE")
    f_us=$(field "$F_LINE" per_task_us) && is_float "$f_us" \
      || die "no numeric per_task_us in flowkit's line: $F_LINE"
  fi

  log "prefect $case n=$n ..."
  run_prefect "$case" "$n"
  RAW+=("$P_LINE")
  p_us=$(field "$P_LINE" per_task_us) && is_float "$p_us" \
    || die "no numeric per_task_us in Prefect's line: $P_LINE"
  p_cold=$(field "$P_LINE" cold_first_flow_s) || p_cold=-

  ROWS+=("$case $n $f_us $p_us $p_cold ${P_RSS_KB:--}")
done

# ---------------------------------------------------------------- table
printf '\n'
printf '%s\n' "${ROWS[@]}" | awk '
  function speedup(f, p,   r) {
    if (f == "-") return "-"
    if (f + 0 == 0) return "inf"
    r = p / f
    return r >= 100 ? sprintf("%.0fx", r) : (r >= 10 ? sprintf("%.1fx", r) : sprintf("%.2fx", r))
  }
  BEGIN {
    fmt = "%-6s %7s %18s %18s %10s %18s %19s\n"
    printf fmt, "case", "N", "flowkit us/task", "prefect us/task", "speedup", "prefect cold 1st", "prefect peak RSS"
    printf fmt, "", "", "", "", "(p/f)", "flow (s)", "(MiB, cli+server)"
  }
  {
    rss = ($6 == "-" || $6 == "") ? "-" : sprintf("%.0f", $6 / 1024)
    printf fmt, $1, $2, $3, $4, speedup($3, $4), $5, rss
  }'
printf '\nraw result lines:\n'
printf '  %s\n' "${RAW[@]}"
