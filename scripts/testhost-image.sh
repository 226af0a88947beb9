#!/usr/bin/env bash
# Build the test-host image without any container registry: debootstrap a minimal Debian 12 with
# systemd as PID 1, python3 and the Debian packages the roles install (so test hosts need no
# network), then `podman import` it. The image is tagged with a hash of this recipe and rebuilt
# only when the recipe changes; `localhost/altmesh-testhost:latest` points at the current one.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${ALTMESH_TESTHOST_IMAGE:-localhost/altmesh-testhost}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

# Everything the roles install on a host is baked in here: a role's apt task then finds its
# packages present and never needs an index.
PACKAGES=(
  systemd systemd-sysv dbus libpam-systemd
  python3 python3-apt python3-venv sudo
  iproute2 iputils-ping ca-certificates procps less
  # bind_alt
  bind9 bind9-utils bind9-dnsutils python3-dnspython
  # dashboard: PostgreSQL and the driver Ansible's postgresql modules use; acl lets Ansible
  # become the postgres user
  postgresql python3-psycopg2 acl
  # the lab's and the tests' probes (curl --socks5-hostname, ...)
  curl
)
recipe_hash=$( { cat "$0"; printf '%s\n' "${PACKAGES[@]}"; } | sha256sum | cut -c1-12)
tag="$IMAGE:r$recipe_hash"

if podman image exists "$tag"; then
  echo ">> test-host image $tag is current"
  podman tag "$tag" "$IMAGE:latest"
  exit 0
fi

echo ">> building test-host image $tag (debootstrap from $MIRROR, about a minute)"
root=$(mktemp -d /var/tmp/altmesh-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
include=$(IFS=,; echo "${PACKAGES[*]}")
debootstrap --variant=minbase --include="$include" bookworm "$root" "$MIRROR" \
  > "$root.log" 2>&1 || { tail -30 "$root.log" >&2; echo "debootstrap failed: see $root.log" >&2; exit 1; }
rm -f "$root.log"

# A machine-id is made at first boot of each container; services do not start at build time.
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
# Stock named would start in every test host and query the root servers: keep it off until a role
# configures it (the bind_alt role enables it).
chroot "$root" systemctl disable named.service >/dev/null 2>&1 || true
# PostgreSQL too: only a dashboard host uses it (the dashboard role enables it there).
chroot "$root" systemctl disable postgresql.service >/dev/null 2>&1 || true
chroot "$root" systemctl mask systemd-resolved.service getty@.service console-getty.service \
  systemd-logind.service >/dev/null 2>&1 || true
# A dead local resolver until the podman network provides one; nothing leaves the machine.
rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/archives/"*.deb
echo "altmesh-testhost" > "$root/etc/hostname"

tar -C "$root" -c . | podman import \
  --change 'CMD ["/sbin/init"]' \
  --change 'STOPSIGNAL SIGRTMIN+3' \
  --change 'ENV container=podman' \
  --message "altmesh test host, recipe $recipe_hash" \
  - "$tag" >/dev/null
podman tag "$tag" "$IMAGE:latest"
echo ">> built $tag"
