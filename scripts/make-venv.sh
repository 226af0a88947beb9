#!/usr/bin/env bash
# Build the controller virtual environment from the lock file, then install the two altmesh
# distributions from this checkout in editable mode (without touching the pins).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv}
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "python3-venv is missing: run 'make host' (or apt-get install python3-venv)" >&2
  exit 1
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
echo ">> installing pinned dependencies from requirements.lock into $venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r requirements.lock 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
for dist in files/relay files/dashboard; do
  if [ -f "$dist/pyproject.toml" ]; then
    echo ">> installing $dist (editable)"
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$dist" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  fi
done
