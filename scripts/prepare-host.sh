#!/usr/bin/env bash
# Prepare the controller (Debian 12): the Debian packages altmesh's tooling and tests need, and a
# containers configuration podman can run systemd test hosts with on this kind of machine.
# Idempotent: installs only what is missing, rewrites the config only when it differs.
set -euo pipefail

packages=(
  # python
  python3 python3-venv python3-dev build-essential
  # test hosts
  podman runc fuse-overlayfs slirp4netns uidmap debootstrap aardvark-dns netavark
  # netavark calls iptables to set up a named network; Debian does not pull it in
  iptables
  # DNS: named for the tests, dig/delv/nsupdate/dnssec tools on the controller
  bind9 bind9-utils bind9-dnsutils
  # relay tests and benchmarks
  curl socat openssh-client openssh-server tcpdump
  # dashboard tests: a real browser and a real PostgreSQL
  chromium postgresql
  # misc
  git make jq
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo ">> installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo ">> Debian packages: all present"
fi

# Services installed here must not run on their own: tests start named and PostgreSQL themselves
# on free ports. Debian may have started them at install time (no policy-rc.d on a fresh host).
for unit in named bind9 postgresql; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$unit" 2>/dev/null; then
    echo ">> stopping and disabling the controller's own $unit (tests run their own)"
    systemctl disable --now "$unit" >/dev/null 2>&1 || true
  fi
done

# podman: runc (crun refuses hybrid cgroups here), netavark with aardvark-dns for name resolution
# between test hosts. Only our settings; the rest keeps podman's defaults.
conf=/etc/containers/containers.conf.d/50-altmesh.conf
want='# written by altmesh scripts/prepare-host.sh: runtime and limits for systemd test hosts
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"

[network]
network_backend = "netavark"

[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
'
if [ "$(cat "$conf" 2>/dev/null)" != "$(printf '%s' "$want")" ]; then
  echo ">> writing $conf"
  mkdir -p "$(dirname "$conf")"
  printf '%s' "$want" > "$conf"
fi
echo ">> host ready"
