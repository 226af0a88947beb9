#!/usr/bin/env bash
# Re-pin requirements.lock from requirements/*.in with pip-compile (in a throwaway venv).
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools"
"$tools/bin/pip" install -q pip-tools
cd requirements
"$tools/bin/pip-compile" -q --strip-extras --allow-unsafe -o ../requirements.lock all.in
echo "requirements.lock re-pinned"
