#!/usr/bin/env bash
# Run every benchmark (bench/bench_*.py: dashboard, floods, memory, protocol, relay and mesh
# paths, routing engine); each prints its figures beside the peers or the unloaded baseline it
# compares against, measured in the same run (bench_relay.py also its goals, PASS or MISS).
# Figures are load-sensitive: the header and footer give the machine and its load average before
# and after, and the load is printed before each benchmark. Exits 1 if any benchmark fails or
# overruns BENCH_TIMEOUT seconds (default 400 each; the whole run takes some 3-6 minutes,
# bench_relay.py most of it). A goal bench_relay.py misses is printed, not a failure.
# On SIGTERM/SIGINT the running benchmark is stopped by PID and stops its own servers.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export PYTHONUNBUFFERED=1  # figures and errors in the order they happen, also through a pipe
timeout_seconds="${BENCH_TIMEOUT:-400}"

child=""
stop_child() {
  if [ -n "$child" ]; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  echo "bench: interrupted" >&2
  exit 143
}
trap stop_child TERM INT HUP

load() { cut -d' ' -f1-3 /proc/loadavg; }
started=$(date +%s)
echo "bench: $(date -u +'%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average $(load)" \
  "(1/5/15 min), $(python --version), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"

failed=()
shopt -s nullglob
benchmarks=(bench/bench_*.py)
[ ${#benchmarks[@]} -gt 0 ] || { echo "no benchmarks in bench/" >&2; exit 1; }
for b in "${benchmarks[@]}"; do
  echo "== $b (load $(load))"
  # In the background so the trap can run while it does; timeout stops an overrun with SIGTERM
  # (the benchmark then stops its servers), SIGKILL 30 s later if it has not.
  timeout --kill-after=30 "$timeout_seconds" python "$b" &
  child=$!
  rc=0
  wait "$child" || rc=$?
  child=""
  if [ "$rc" -eq 124 ]; then
    echo "bench: $b overran ${timeout_seconds} s" >&2
  fi
  [ "$rc" -eq 0 ] || failed+=("$b (exit $rc)")
done

echo "bench: done in $(($(date +%s) - started)) s, load average $(load)"
if [ ${#failed[@]} -gt 0 ]; then
  echo "bench: FAILED: ${failed[*]}" >&2
  exit 1
fi
