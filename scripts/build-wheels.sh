#!/usr/bin/env bash
# Build the altmesh wheels and a wheelhouse of their runtime dependencies, pinned by
# requirements.lock, into wheelhouse/. Roles copy it to hosts and install with --no-index, so a
# host never needs a package index.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-wheelhouse}
mkdir -p "$out"
echo ">> building wheels into $out/"
.venv/bin/pip wheel -q --disable-pip-version-check -c requirements.lock -w "$out" \
  files/relay "files/dashboard[postgresql]" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
ls "$out" | sed 's/^/   /'
