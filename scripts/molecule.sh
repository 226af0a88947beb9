#!/usr/bin/env bash
# Run molecule scenarios with the settings molecule 26 needs here: the venv's bin on PATH (molecule
# calls ansible-config), the repository's roles on ANSIBLE_ROLES_PATH.
# Usage: scripts/molecule.sh                 -> `molecule test` for every scenario
#        scripts/molecule.sh ACTION [ARGS]   -> `molecule ACTION ARGS`, e.g. converge -s bind_alt
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_ROLES_PATH="$PWD/roles"
export ANSIBLE_CONFIG="$PWD/ansible.cfg"
export ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-0}
# The podman connection cannot pipeline: Ansible writes module arguments (some of them secrets,
# no_log or not) to its local temp directory for a moment. Keep that in memory, never on disk.
export ANSIBLE_LOCAL_TEMP=${ANSIBLE_LOCAL_TEMP:-/dev/shm/altmesh-ansible-$(id -u)}
if [ $# -gt 0 ]; then
  exec molecule "$@"
fi
status=0
for scenario in molecule/*/molecule.yml; do
  name=$(basename "$(dirname "$scenario")")
  [ "$name" = default ] && continue
  echo ">> molecule test -s $name"
  start=$(date +%s)
  molecule test -s "$name" || status=1
  echo ">> molecule scenario $name: $(( $(date +%s) - start )) s"
done
exit $status
