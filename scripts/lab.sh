#!/usr/bin/env bash
# The local lab: the whole altmesh network of inventory/lab (DNS, dashboard, three relays in a
# partial mesh, a service and a client) on podman test hosts of this machine, built with the
# operator's playbook.
# Usage: scripts/lab.sh up     create the lab's test hosts if absent, run playbooks/site.yml (and
#                              the demo page, playbooks/demo-web.yml), then show the network
#                              working; exit 1 if a check failed (safe to re-run: a second run
#                              changes nothing)
#        scripts/lab.sh show   only the checks, on a running lab
#        scripts/lab.sh down   remove the lab's test hosts and its data (.lab/); keep the network
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${ALTMESH_TESTHOST_IMAGE:-localhost/altmesh-testhost}:latest
NETWORK=${ALTMESH_TEST_NETWORK:-altmesh-test}
INVENTORY=inventory/lab
LAB_DATA=.lab
DNS_NAME=www.lab.alt
SERVICE=hello.lab.alt
CLIENT=altmesh-lab-client
SERVICE_HOST=altmesh-lab-web
DASHBOARD=altmesh-lab-dashboard
ALTMESH=/opt/altmesh/venv/bin/altmesh
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg" ANSIBLE_ROLES_PATH="$PWD/roles"

lab_hosts() {  # every host of the lab inventory (one source: inventory/lab/hosts.yml)
  ansible-inventory -i "$INVENTORY" --list | jq -r '._meta.hostvars | keys[]'
}

# Podman's long-lived helpers (aardvark-dns, the network's DNS, started with the first host) inherit
# the open files of the command that starts a host and outlive it: a lock the caller holds on one
# (`flock LOCKFILE make lab`) would stay held for as long as the lab runs. Start hosts with only
# stdin, stdout and stderr.
without_inherited_files() {
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ] && [ "$fd" -ne 255 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec "$@"
  )
}

start_host() {
  local name=$1
  if podman container exists "$name"; then
    if [ "$(podman inspect --format '{{.State.Running}}' "$name")" != true ]; then
      echo ">> starting test host $name"
      without_inherited_files podman start "$name" >/dev/null
    fi
  else
    echo ">> creating test host $name"
    without_inherited_files podman run -d --name "$name" --hostname "$name" \
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

failed=()
check() {  # check NAME COMMAND...: run a check, print its output, remember a failure
  local name=$1
  shift
  echo
  echo "== $name"
  if "$@"; then
    echo "   -> ok"
  else
    echo "   -> FAILED"
    failed+=("$name")
  fi
}

show_dnssec() {
  local resolver primary
  resolver=$(address_of altmesh-lab-resolver)
  primary=$(address_of altmesh-lab-ns1)
  echo "through the lab's resolver ($resolver): dig +dnssec $DNS_NAME (look for the 'ad' flag)"
  dig @"$resolver" +dnssec +noall +comments +answer "$DNS_NAME" A | grep -E 'flags:|status:|IN\s+(A|RRSIG)\s'
  dig @"$resolver" +dnssec "$DNS_NAME" A | grep -Eq ';; flags:[a-z ]* ad[ ;]' || {
    echo "the resolver's answer for $DNS_NAME is not DNSSEC-validated"
    return 1
  }
  echo "against the primary ($primary), validated on this machine with the exported anchor:"
  echo "   delv @$primary -a $LAB_DATA/alt.trust-anchors.conf $DNS_NAME A"
  delv @"$primary" -a "$LAB_DATA/alt.trust-anchors.conf" "$DNS_NAME" A +root=alt
}

# On the client host: open a stream to the service through SOCKS5 and keep it open while asking
# the client for its status, whose open streams carry their path across the relays.
STREAM_PATH='
import json, socket, subprocess, sys, time
name, port, relay_names = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
sock = socket.create_connection(("127.0.0.1", 1080), timeout=20)
sock.sendall(b"\x05\x01\x00")
assert sock.recv(2) == b"\x05\x00", "SOCKS5 refused"
sock.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name.encode() + port.to_bytes(2, "big"))
reply = sock.recv(10)
if reply[1] != 0:
    sys.exit(f"SOCKS5 reply {reply[1]} for {name}:{port}")
deadline = time.monotonic() + 5
while True:
    status = json.loads(subprocess.run(
        ["/opt/altmesh/venv/bin/altmesh", "status", "--json", "--config", "/etc/altmesh/node.toml"],
        check=True, capture_output=True, text=True).stdout)
    if "streams" not in status:
        sys.exit("this altmesh does not report stream paths yet")
    paths = [stream["path"] for stream in status["streams"] if stream.get("path")]
    if paths or time.monotonic() > deadline:
        break
    time.sleep(0.2)
if not paths:
    sys.exit("the open stream has no path yet")
# A relay labels the relays it has no name for (not its own mesh peers) with the start of their
# key: name those from the cards of the lab relays.
path = [relay_names.get(label, label) for label in paths[0]]
print("client -> " + " -> ".join(path) + " -> service")
if len(path) < 2:
    sys.exit(f"the stream crossed {len(path)} relay, not at least two")
'

show_service_through_relays() {
  local client_status service_status
  echo "on $CLIENT: curl --socks5-hostname 127.0.0.1:1080 http://$SERVICE/"
  podman exec "$CLIENT" curl -sS --max-time 20 --socks5-hostname 127.0.0.1:1080 "http://$SERVICE/" || return 1
  client_status=$(podman exec "$CLIENT" "$ALTMESH" status --json --config /etc/altmesh/node.toml)
  service_status=$(podman exec "$SERVICE_HOST" "$ALTMESH" status --json --config /etc/altmesh/node.toml)
  echo "the client is attached to $(jq -r .relay <<<"$client_status") ($(relay_name_at "$(jq -r .relay <<<"$client_status")")),"
  echo "the service to $(jq -r .relay <<<"$service_status") ($(relay_name_at "$(jq -r .relay <<<"$service_status")"));"
  echo "the path of a stream to $SERVICE, from the client's status while it is open:"
  podman exec "$CLIENT" python3 -c "$STREAM_PATH" "$SERVICE" 80 "$(relay_key_labels)" | sed 's/^/   /'
}

relay_key_labels() {  # {"<first 8 characters of a lab relay's key>": "<its name>", ...}
  local host
  for host in altmesh-lab-relay1 altmesh-lab-relay2 altmesh-lab-relay3; do
    podman exec "$host" cat /etc/altmesh/relay-card.json
  done | jq -sc 'map({key: .public_key[:8], value: .name}) | from_entries'
}

relay_name_at() {  # relay_name_at HOST:PORT: the name of the lab relay with that endpoint
  local endpoint=$1 host
  for host in altmesh-lab-relay1 altmesh-lab-relay2 altmesh-lab-relay3; do
    if podman exec "$host" cat /etc/altmesh/relay-card.json | jq -e --arg e "$endpoint" '.endpoints | index($e)' >/dev/null; then
      podman exec "$host" cat /etc/altmesh/relay-card.json | jq -r .name
      return
    fi
  done
  echo "not a lab relay"
}

# Logs in as the first admin inside the dashboard host (the password never leaves it) and asks the
# API for the relays.
DASHBOARD_RELAYS='
import http.cookiejar, json, re, sys, urllib.parse, urllib.request
url = sys.argv[1]
password = open("/root/altmesh-dashboard-admin.password").read().strip()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
opener.addheaders = [("Referer", url + "/auth/login")]
page = opener.open(url + "/auth/login", timeout=10).read().decode()
token = re.search(r"name=\"csrf_token\" type=\"hidden\" value=\"([^\"]+)\"", page).group(1)
form = urllib.parse.urlencode({"csrf_token": token, "username": "admin", "password": password})
opener.open(url + "/auth/login", form.encode(), timeout=10)
print(opener.open(url + "/api/v1/relays", timeout=10).read().decode())
'

show_dashboard() {
  local url relays
  url="http://$(address_of "$DASHBOARD"):8080"
  echo "dashboard: $url  (user admin; the password is on the dashboard host:"
  echo "           podman exec $DASHBOARD cat /root/altmesh-dashboard-admin.password)"
  relays=$(podman exec "$DASHBOARD" python3 -c "$DASHBOARD_RELAYS" "$url") || return 1
  echo "its API, GET /api/v1/relays:"
  jq -r '(.relays // .)[] | "   \(.name)\t\(.state)\t\(.address // "")"' <<<"$relays"
  jq -e '[(.relays // .)[] | select(.state == "up")] | length == 3' <<<"$relays" >/dev/null || {
    echo "not all three relays are up in the dashboard: it lists $(jq '(.relays // .) | length' <<<"$relays") relays,"
    echo "$(jq '[(.relays // .)[] | select(.state == "up")] | length' <<<"$relays") of them up (relays register when they first report to it)"
    return 1
  }
}

# each relay's unit and its mesh links (from its metrics, on its loopback): the partial mesh of
# inventory/lab, relay1 - relay2 - relay3
declare -A LAB_MESH=([relay1]=relay2 [relay2]=relay1,relay3 [relay3]=relay2)
show_relays() {
  local host name state links ok=0
  for host in altmesh-lab-relay1 altmesh-lab-relay2 altmesh-lab-relay3; do
    name=$(podman exec "$host" cat /etc/altmesh/relay-card.json | jq -r .name)
    state=$(podman exec "$host" systemctl is-active altmesh-relay.service || true)
    links=$(podman exec "$host" curl -sf --max-time 5 http://127.0.0.1:9400/metrics |
      sed -n 's/^altmesh_mesh_link_up{peer="\([^"]*\)"} 1.0$/\1/p' | sort | paste -sd, -)
    echo "   $name: $state, mesh links up to: ${links:-none}"
    [ "$state" = active ] && [ "$links" = "${LAB_MESH[$name]:-}" ] || ok=1
  done
  return $ok
}

show() {
  check "DNSSEC-validated answers from the lab's DNS" show_dnssec
  check "the relays, and their links in the partial mesh" show_relays
  check "the dashboard, and the relays it sees" show_dashboard
  check "the service's page, fetched by the client across the relays" show_service_through_relays
  echo
  if [ ${#failed[@]} -gt 0 ]; then
    echo ">> lab is up; these checks failed: ${failed[*]}"
    exit 1
  fi
  echo ">> lab is up; every check passed"
}

up() {
  local name
  mapfile -t hosts < <(lab_hosts)
  for name in "${hosts[@]}"; do start_host "$name"; done
  for name in "${hosts[@]}"; do wait_for_systemd "$name"; done
  mkdir -p "$LAB_DATA"
  # The podman connection cannot pipeline: Ansible's local temporary files (module arguments,
  # among them keys and tokens on their way between hosts) stay in memory, not on disk.
  ANSIBLE_LOCAL_TEMP=$(mktemp -d /dev/shm/altmesh-lab-ansible.XXXXXX)
  export ANSIBLE_LOCAL_TEMP
  trap 'rm -rf "$ANSIBLE_LOCAL_TEMP"' EXIT
  echo ">> ansible-playbook -i $INVENTORY playbooks/site.yml"
  ansible-playbook -i "$INVENTORY" playbooks/site.yml
  echo ">> ansible-playbook -i $INVENTORY playbooks/demo-web.yml (the page behind $SERVICE)"
  ansible-playbook -i "$INVENTORY" playbooks/demo-web.yml
  show
}

down() {
  local name
  for name in $(lab_hosts); do
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
  show) show ;;
  down) down ;;
  *) echo "usage: $0 up|show|down" >&2; exit 2 ;;
esac
