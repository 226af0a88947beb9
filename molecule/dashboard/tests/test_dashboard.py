"""The dashboard scenario, shown on the running test hosts: the dashboard (PostgreSQL, TLS), the DNS
primary whose zone it manages, and relay1, whose API token the dashboard made.

Requests come from relay1's host, as a browser or a relay elsewhere on the network would send
them, and check the operator's certificate (prepare.yml made it for the dashboard's name).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest
import testinfra
from testinfra.host import Host

RUN_ID = os.environ.get("ALTMESH_RUN_ID", "local")  # scripts/molecule.sh: test hosts of this run
NS1 = f"dashboard-ns1-{RUN_ID}"
WEB = f"dashboard-web-{RUN_ID}"
RELAY1 = f"dashboard-relay1-{RUN_ID}"
URL = f"https://{WEB}:8443"
CA_ON_RELAY = "/etc/altmesh/dashboard-ca.pem"
ADMIN_PASSWORD_FILE = "/root/altmesh-dashboard-admin.password"
MANAGE = "/opt/altmesh/bin/altmesh-dashboard-manage"

# A logged-in session from a host of the network: Python's standard library only (the test
# hosts' python3), the password on stdin, every answer as JSON on stdout.
SESSION = r"""
import http.cookiejar, json, re, ssl, sys, urllib.error, urllib.parse, urllib.request
url, cafile, username = sys.argv[1:4]
paths = sys.argv[4:]
password = sys.stdin.readline().rstrip("\n")
context = ssl.create_default_context(cafile=cafile)
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(
    urllib.request.HTTPSHandler(context=context), urllib.request.HTTPCookieProcessor(jar))
opener.addheaders = [("Referer", url + "/auth/login")]  # CSRF over HTTPS checks the referrer
def fetch(path, data=None):
    try:
        with opener.open(url + path, data=data, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
status, page = fetch("/auth/login")
token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
form = urllib.parse.urlencode(
    {"csrf_token": token, "username": username, "password": password}).encode()
status, page = fetch("/auth/login", form)
print(json.dumps({"login": [status, page], **{path: fetch(path) for path in paths}}))
"""


def podman_host(name: str) -> Host:
    return testinfra.get_host(f"podman://{name}")


@pytest.fixture(scope="module")
def ns1() -> Host:
    return podman_host(NS1)


@pytest.fixture(scope="module")
def web() -> Host:
    return podman_host(WEB)


@pytest.fixture(scope="module")
def relay1() -> Host:
    return podman_host(RELAY1)


def unit_property(host: Host, unit: str, name: str) -> str:
    return str(host.check_output(f"systemctl show --property {name} --value {unit}"))


def logged_in(web: Host, relay1: Host, *paths: str) -> dict[str, tuple[int, str]]:
    password = web.file(ADMIN_PASSWORD_FILE).content_string.strip()
    command = (
        f"printf '%s\\n' {quote(password)} | python3 -c {quote(SESSION)} "
        f"{URL} {CA_ON_RELAY} admin {' '.join(paths)}"
    )
    result = relay1.run(command)
    assert result.rc == 0, result.stderr
    answers: dict[str, Any] = json.loads(result.stdout)
    return {path: (int(status), str(body)) for path, (status, body) in answers.items()}


def quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def test_the_dashboard_runs_under_gunicorn_in_its_hardened_unit(web: Host) -> None:
    unit = "altmesh-dashboard.service"
    assert unit_property(web, unit, "ActiveState") == "active"
    assert unit_property(web, unit, "User") == "altmesh-dashboard"
    assert unit_property(web, unit, "NoNewPrivileges") == "yes"
    assert unit_property(web, unit, "ProtectSystem") == "strict"
    assert unit_property(web, unit, "CapabilityBoundingSet") == ""
    assert "gunicorn_conf" in unit_property(web, unit, "ExecStart")
    assert web.socket("tcp://0.0.0.0:8443").is_listening


def test_the_login_page_is_served_over_tls_with_the_operator_s_certificate(relay1: Host) -> None:
    page = relay1.run(f"curl -sS --fail --max-time 10 --cacert {CA_ON_RELAY} {URL}/auth/login")
    assert page.rc == 0, page.stderr
    assert 'name="password"' in page.stdout and 'name="csrf_token"' in page.stdout
    plain = relay1.run(f"curl -sS --max-time 5 http://{WEB}:8443/auth/login")
    assert plain.rc != 0 or "400" in plain.stdout  # gunicorn speaks only TLS there


def test_the_first_admin_logs_in_with_the_password_made_on_the_dashboard_host(
    web: Host, relay1: Host
) -> None:
    password_file = web.file(ADMIN_PASSWORD_FILE)
    assert (password_file.user, password_file.mode) == ("root", 0o600)
    answers = logged_in(web, relay1, "/api/v1/relays", "/api/v1/openapi.json")
    status, page = answers["login"]
    assert status == 200 and "Log out</button>" in page, page[:500]
    status, body = answers["/api/v1/relays"]
    assert status == 200, body
    assert isinstance(json.loads(body), dict | list)
    assert answers["/api/v1/openapi.json"][0] == 200


def test_a_wrong_password_is_refused(relay1: Host) -> None:
    command = (
        f"printf 'not-the-password\\n' | python3 -c {quote(SESSION)} {URL} {CA_ON_RELAY} admin"
    )
    answers = json.loads(relay1.check_output(command))
    page = answers["login"][1]
    assert "Log out</button>" not in page
    assert 'name="password"' in page  # the login form again


def test_the_database_is_the_local_postgresql_without_a_password(web: Host) -> None:
    tables = web.check_output(
        "runuser -u postgres -- psql -At -d altmesh_dashboard -c "
        "\"select tablename from pg_tables where schemaname = 'public'\""
    )
    assert "users" in tables.split() and "alembic_version" in tables.split()
    assert not web.file("/var/lib/altmesh-dashboard/dashboard.sqlite3").exists
    config = web.file("/etc/altmesh-dashboard/dashboard.toml").content_string
    assert "postgresql+psycopg://altmesh-dashboard@/altmesh_dashboard?host=" in config
    assert "password" not in config.lower()


def test_secrets_are_made_or_kept_on_the_dashboard_host_and_never_in_its_config(
    web: Host, ns1: Host
) -> None:
    config = web.file("/etc/altmesh-dashboard/dashboard.toml").content_string
    secret_env = web.file("/etc/altmesh-dashboard/secret.env")
    dns_env = web.file("/etc/altmesh-dashboard/dns.env")
    rndc_key = web.file("/etc/altmesh-dashboard/rndc-readonly.key")
    assert (secret_env.user, secret_env.mode) == ("root", 0o600)
    assert (dns_env.user, dns_env.mode) == ("root", 0o600)
    assert (rndc_key.user, rndc_key.mode) == ("altmesh-dashboard", 0o600)
    assert re.search(r"^ALTMESH_DASHBOARD_SECRET_KEY=\S{48,}$", secret_env.content_string, re.M)
    primary_key = ns1.file("/etc/bind/keys/altmesh-dashboard.key").content_string
    secret = re.search(r'secret "([^"]+)"', primary_key)
    assert secret is not None
    assert f"ALTMESH_DASHBOARD_DNS_TSIG_SECRET={secret.group(1)}" in dns_env.content_string
    for value in (secret.group(1), secret_env.content_string.split("=", 1)[1].strip()):
        assert value not in config
    journal = web.check_output("journalctl --no-pager -o cat")
    assert secret.group(1) not in journal


def test_the_dashboard_reads_the_zone_and_named_s_status_from_the_primary(
    web: Host, relay1: Host
) -> None:
    answers = logged_in(web, relay1, "/dns/", "/dns/status")
    status, zone_page = answers["/dns/"]
    assert status == 200, zone_page[:500]
    assert '<strong id="serial">' in zone_page and "ns1.alt." in zone_page, zone_page[:2000]
    status, status_page = answers["/dns/status"]
    assert status == 200, status_page[:500]
    assert "9.18" in status_page, status_page[:2000]  # named's version, from `rndc status`


def test_rndc_from_the_dashboard_is_read_only(web: Host, ns1: Host) -> None:
    command = (
        f"setpriv --reuid=altmesh-dashboard --regid=altmesh-dashboard --init-groups -- "
        f"rndc -s {ns1.check_output('hostname -I').split()[0]} -p 953 "
        f"-k /etc/altmesh-dashboard/rndc-readonly.key"
    )
    assert "up and running" in web.check_output(f"{command} status")
    assert web.run(f"{command} reconfig").rc != 0


def test_the_relay_holds_a_token_the_dashboard_made_for_it(web: Host, relay1: Host) -> None:
    token_file = relay1.file("/etc/altmesh/dashboard.token")
    assert (token_file.user, token_file.group, token_file.mode) == ("altmesh", "altmesh", 0o600)
    assert re.fullmatch(r"amr_\S+", token_file.content_string.strip())
    tokens = web.check_output(f"{MANAGE} tokens list")
    assert re.search(r"^\d+\t(relay:)?relay1\tactive\t", tokens, re.M), tokens
    assert len(re.findall(r"^\d+\t(?:relay:)?relay1\t", tokens, re.M)) == 1
    config = relay1.file("/etc/altmesh/relay.toml").content_string
    assert f'url = "{URL}"' in config
    assert 'token_file = "/etc/altmesh/dashboard.token"' in config
    assert f'ca_file = "{CA_ON_RELAY}"' in config


def test_the_relay_s_token_is_accepted_by_the_dashboard_api(web: Host, relay1: Host) -> None:
    card = json.loads(relay1.file("/etc/altmesh/relay-card.json").content_string)
    host, port = card["endpoints"][0].rsplit(":", 1)
    body = json.dumps(
        {
            "name": card["name"],
            "public_key": card["public_key"],
            "address": card["address"],
            "endpoints": [{"host": host, "port": int(port)}],
        }
    )
    # the token goes from its file to curl's stdin (a header file), never onto a command line
    answer = relay1.run(
        "printf 'Authorization: Bearer %%s\\n' \"$(cat /etc/altmesh/dashboard.token)\" | "
        "curl -sS --max-time 10 --cacert %s -o /dev/stdout -w '\\n%%{http_code}' "
        "-H @- -H 'Content-Type: application/json' -d %s %s/api/v1/relays/register",
        CA_ON_RELAY,
        body,
        URL,
    )
    assert answer.rc == 0, answer.stderr
    status = answer.stdout.strip().splitlines()[-1]
    assert status in ("200", "201"), answer.stdout
    answers = logged_in(web, relay1, "/api/v1/relays")
    assert "relay1" in answers["/api/v1/relays"][1]


def test_the_documented_periodic_command_runs_from_its_timer(web: Host) -> None:
    timer = "altmesh-dashboard-check-liveness.timer"
    assert unit_property(web, timer, "ActiveState") == "active"
    web.run("systemctl start altmesh-dashboard-check-liveness.service")
    service = "altmesh-dashboard-check-liveness.service"
    assert unit_property(web, service, "Result") == "success"
    assert unit_property(web, service, "ExecMainStatus") == "0"
