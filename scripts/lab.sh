#!/usr/bin/env bash
# The local lab: the altmesh network (for now its DNS: primary, secondary, resolver) on podman test
# hosts of this machine, built with the operator's playbook from inventory/lab.
# Usage: scripts/lab.sh up     create the lab's test hosts if absent, run playbooks/site.yml, show
#                              a DNSSEC-validated answer (safe to re-run: a second run changes nothing)
#        scripts/lab.sh down   remove the lab's test hosts and its data (.lab/); keep the network
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${ALTMESH_TESTHOST_IMAGE:-localhost/altmesh-testhost}:latest
NETWORK=${ALTMESH_TEST_NETWORK:-altmesh-test}
HOSTS=(altmesh-lab-ns1 altmesh-lab-ns2 altmesh-lab-resolver)
LAB_DATA=.lab
NAME=www.lab.alt

start_host() {
  local name=$1
  if podman container exists "$name"; then
    if [ "$(podman inspect --format '{{.State.Running}}' "$name")" != true ]; then
      echo ">> starting test host $name"
      podman start "$name" >/dev/null
    fi
  else
    echo ">> creating test host $name"
    podman run -d --name "$name" --hostname "$name" \
      --runtime=runc --systemd=always --cap-add SYS_ADMIN,NET_ADMIN \
      --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 \
      --network "$NETWORK" "$IMAGE" /sbin/init >/dev/null
  fi
}

wait_for_systemd() {
  local name=$1 state
  for _ in $(seq 60); do
    state=$(podman exec "$name" systemctl is-system-running 2>/dev/null || true)
    case $state in running | degraded) return 0 ;; esac
    sleep 0.5
  done
  echo "test host $name did not finish booting (systemd: ${state:-unknown})" >&2
  exit 1
}

address_of() {
  podman inspect --format "{{(index .NetworkSettings.Networks \"$NETWORK\").IPAddress}}" "$1"
}

up() {
  for name in "${HOSTS[@]}"; do start_host "$name"; done
  for name in "${HOSTS[@]}"; do wait_for_systemd "$name"; done
  mkdir -p "$LAB_DATA"
  # The podman connection cannot pipeline: Ansible's local temporary files (module arguments,
  # among them the zone-transfer key on its way to the secondary) stay in memory, not on disk.
  ANSIBLE_LOCAL_TEMP=$(mktemp -d /dev/shm/altmesh-lab-ansible.XXXXXX)
  export ANSIBLE_LOCAL_TEMP
  trap 'rm -rf "$ANSIBLE_LOCAL_TEMP"' EXIT
  export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg" ANSIBLE_ROLES_PATH="$PWD/roles"
  echo ">> ansible-playbook -i inventory/lab playbooks/site.yml"
  ansible-playbook -i inventory/lab playbooks/site.yml

  local resolver primary
  resolver=$(address_of altmesh-lab-resolver)
  primary=$(address_of altmesh-lab-ns1)
  echo
  echo ">> through the lab's resolver ($resolver): dig +dnssec $NAME (look for the 'ad' flag)"
  dig @"$resolver" +dnssec +noall +comments +answer "$NAME" A | grep -E 'flags:|status:|IN\s+(A|RRSIG)\s'
  if ! dig @"$resolver" +dnssec "$NAME" A | grep -Eq ';; flags:[a-z ]* ad[ ;]'; then
    echo "the resolver's answer for $NAME is not DNSSEC-validated" >&2
    exit 1
  fi
  echo
  echo ">> against the primary ($primary), validated on this machine with the exported anchor:"
  echo "   delv @$primary -a $LAB_DATA/alt.trust-anchors.conf $NAME A"
  delv @"$primary" -a "$LAB_DATA/alt.trust-anchors.conf" "$NAME" A +root=alt
}

down() {
  for name in "${HOSTS[@]}"; do
    if podman container exists "$name"; then
      echo ">> removing test host $name"
      podman rm -f -t 5 "$name" >/dev/null
    fi
  done
  rm -rf "$LAB_DATA" .cache/facts/*altmesh-lab-*
  echo ">> lab removed (the network $NETWORK stays: molecule uses it)"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
