#!/usr/bin/env bash
# Build the altmesh wheels and a wheelhouse of their runtime dependencies, pinned by
# requirements.lock, into wheelhouse/. Roles copy it to hosts and install with --no-index, so a
# host never needs a package index.
#
# wheelhouse/ holds:
#   *.whl                  the two altmesh distributions and every runtime dependency
#   constraints.txt        NAME==VERSION of every wheel: hosts install exactly these
#   altmesh-wheelhouse.tar the wheels and constraints.txt in one file (what roles copy)
#   SHA256SUMS             checksums of the wheels: roles reinstall only when it differs
#
# The build is reproducible (SOURCE_DATE_EPOCH, a clean build directory): the same sources give
# byte-identical wheels, so re-running `make wheels` without a change reinstalls nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-wheelhouse}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-315532800}  # 1980-01-01, the zip format's epoch
build=$(mktemp -d "${TMPDIR:-/tmp}/altmesh-wheels.XXXXXX")
trap 'rm -rf "$build"' EXIT

echo ">> building wheels into $out/"
# setuptools keeps build/ between builds: a module deleted from the sources would stay in it
rm -rf files/relay/build files/dashboard/build
.venv/bin/pip wheel -q --disable-pip-version-check -c requirements.lock -w "$build/wheels" \
  files/relay "files/dashboard[postgresql]" \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
rm -rf files/relay/build files/dashboard/build

cd "$build/wheels"
# NAME==VERSION from each wheel's file name (PEP 427: NAME-VERSION-...whl, NAME normalised)
for wheel in *.whl; do
  IFS=- read -r name version _ <<<"$wheel"
  printf '%s==%s\n' "$name" "$version"
done | LC_ALL=C sort > constraints.txt
LC_ALL=C sha256sum -- *.whl constraints.txt | LC_ALL=C sort -k2 > ../SHA256SUMS
# A tar with fixed owners, times and order, so it too is the same for the same wheels.
LC_ALL=C tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
  -cf ../altmesh-wheelhouse.tar -- *.whl constraints.txt
cd - >/dev/null

rm -rf "$out.new"
mkdir -p "$out.new"
mv "$build"/wheels/*.whl "$build/wheels/constraints.txt" "$build/altmesh-wheelhouse.tar" \
  "$build/SHA256SUMS" "$out.new/"
rm -rf "$out"
mv "$out.new" "$out"
ls "$out" | sed 's/^/   /'
