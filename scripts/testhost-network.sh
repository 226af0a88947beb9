#!/usr/bin/env bash
# The podman network test hosts live on: --internal (no route off this machine), with DNS between
# containers (aardvark). Idempotent.
set -euo pipefail
NETWORK=${ALTMESH_TEST_NETWORK:-altmesh-test}
SUBNET=${ALTMESH_TEST_SUBNET:-10.89.77.0/24}
if podman network exists "$NETWORK"; then
  if [ "$(podman network inspect "$NETWORK" --format '{{.Internal}}')" != "true" ]; then
    echo "podman network $NETWORK exists but is not --internal; remove it (podman network rm $NETWORK)" >&2
    exit 1
  fi
  echo ">> podman network $NETWORK (internal) exists"
else
  podman network create --internal --subnet "$SUBNET" "$NETWORK" >/dev/null
  echo ">> created podman network $NETWORK (internal, $SUBNET)"
fi
