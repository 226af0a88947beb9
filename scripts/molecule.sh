#!/usr/bin/env bash
# Run molecule scenarios with the settings molecule 26 needs here: the venv's bin on PATH (molecule
# calls ansible-config), the repository's roles on ANSIBLE_ROLES_PATH.
# Usage: scripts/molecule.sh                 -> `molecule test` for every scenario (a fresh run id)
#        scripts/molecule.sh ACTION [ARGS]   -> `molecule ACTION ARGS`, e.g. converge -s bind_alt
#
# Runs never collide: test-host names carry ALTMESH_RUN_ID (molecule.yml: ${ALTMESH_RUN_ID}), and
# molecule's state and Ansible's local temp directory are per run. A full run makes a fresh id;
# single actions use ALTMESH_RUN_ID when set, else an id of this checkout, so that `create`,
# `converge`, `verify` and `destroy` of one scenario find the same hosts.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_ROLES_PATH="$PWD/roles"
export ANSIBLE_CONFIG="$PWD/ansible.cfg"
export ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-0}
# Facts of one run's test hosts are no use to another (their names differ anyway).
export ANSIBLE_CACHE_PLUGIN=memory

if [ $# -gt 0 ]; then
  export ALTMESH_RUN_ID=${ALTMESH_RUN_ID:-$(printf '%s' "$PWD" | sha256sum | cut -c1-6)}
else
  export ALTMESH_RUN_ID=${ALTMESH_RUN_ID:-$(date +%H%M%S)$$}
fi
case $ALTMESH_RUN_ID in
  *[!a-z0-9]* | "") echo "ALTMESH_RUN_ID must be lower-case letters and digits" >&2; exit 2 ;;
esac
run_dir=/tmp/altmesh-molecule-$ALTMESH_RUN_ID
mkdir -p "$run_dir"
# The podman connection cannot pipeline: Ansible writes module arguments (some of them secrets,
# no_log or not) to its local temp directory for a moment. Keep that in memory, never on disk.
export ANSIBLE_LOCAL_TEMP=${ANSIBLE_LOCAL_TEMP:-/dev/shm/altmesh-ansible-$ALTMESH_RUN_ID}

scenario_of() {  # the value of -s/--scenario-name in the arguments, if any
  while [ $# -gt 0 ]; do
    case $1 in
      -s | --scenario-name) echo "${2:-}"; return ;;
      --scenario-name=*) echo "${1#*=}"; return ;;
    esac
    shift
  done
}

if [ $# -gt 0 ]; then
  scenario=$(scenario_of "$@")
  [ -z "$scenario" ] || export MOLECULE_EPHEMERAL_DIRECTORY="$run_dir/$scenario"
  # The ephemeral directory stays for the next action (create, converge, verify, ...); the
  # in-memory Ansible temp directory does not need to.
  status=0
  molecule "$@" || status=$?
  rm -rf "$ANSIBLE_LOCAL_TEMP"
  exit $status
fi

echo ">> molecule run id $ALTMESH_RUN_ID (test hosts *-$ALTMESH_RUN_ID)"
cleanup() { rm -rf "$run_dir" "$ANSIBLE_LOCAL_TEMP"; }
trap cleanup EXIT
status=0
for file in molecule/*/molecule.yml; do
  name=$(basename "$(dirname "$file")")
  [ "$name" = default ] && continue
  echo ">> molecule test -s $name"
  start=$(date +%s)
  MOLECULE_EPHEMERAL_DIRECTORY="$run_dir/$name" molecule test -s "$name" || status=1
  echo ">> molecule scenario $name: $(($(date +%s) - start)) s"
done
exit $status
