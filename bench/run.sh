#!/usr/bin/env bash
# Run every benchmark (bench/bench_*.py); each prints its figures beside the peers it compares
# against, measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
status=0
for b in bench/bench_*.py; do
  [ -e "$b" ] || { echo "no benchmarks in bench/" >&2; exit 1; }
  echo "== $b"
  python "$b" || status=1
done
exit $status
