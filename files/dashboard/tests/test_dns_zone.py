"""DNS management against a real named on loopback (signed `alt.` zone, TSIG): the pages add,
change and delete records that named then serves; bad input never leaves the dashboard; every
refusal or failure of the server is a message an operator can act on."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from html import unescape
from typing import Any

import dns.name
import pytest
from altmesh_dashboard.db import get_session
from altmesh_dashboard.dns.zone import (
    DnsError,
    ZoneClient,
    ZoneSettings,
    parse_rndc_status,
    prerequisite_rdataset,
    validate_record,
)
from altmesh_dashboard.models import AuditEntry
from dns_support import (
    READ_ONLY_KEY,
    DnsLab,
    axfr,
    closed_port,
    dns_lab,
    query,
    silent_tcp_port,
    update_serial,
    wait_for_answer,
    wait_for_axfr,
)
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

ORIGIN = dns.name.from_text("alt.")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsLab]:
    """One named for the module (starting one costs ~0.5 s): tests that change records use names
    of their own, so the seed records stay as SEED_RECORDS says."""
    with dns_lab(tmp_path_factory.mktemp("named")) as running:
        yield running


def _seed(lab: DnsLab, name: str, rdtype: str, rdata: str) -> None:
    """Put a record of a test's own into the zone (as another admin would) and wait for it."""
    record = validate_record(ORIGIN, name, 300, rdtype, rdata)
    ZoneClient.from_config(lab.settings()).add(record)
    wait_for_answer(lab.named, record.name.to_text(), rdtype, [record.rdata_text])


@pytest.fixture
def dns_app(make_app: Callable[..., Flask], lab: DnsLab) -> Flask:
    return make_app(**lab.settings())


def _logged_in(
    app: Flask, role: str, create_user: Callable[..., Any], login: Callable[..., None]
) -> FlaskClient:
    client = app.test_client()
    login(client, create_user(role))
    return client


@pytest.fixture
def operator(
    dns_app: Flask, create_user: Callable[..., Any], login: Callable[..., None]
) -> FlaskClient:
    return _logged_in(dns_app, "operator", create_user, login)


@pytest.fixture
def viewer(
    dns_app: Flask, create_user: Callable[..., Any], login: Callable[..., None]
) -> FlaskClient:
    return _logged_in(dns_app, "viewer", create_user, login)


def _add(
    client: FlaskClient, csrf_token_in: Callable[[str], str], **fields: str
) -> tuple[int, str]:
    form_page = client.get("/dns/records/new")
    assert form_page.status_code == 200, form_page.get_data(as_text=True)
    data = {"name": "", "ttl": "300", "type": "A", "rdata": "", **fields}
    data["csrf_token"] = csrf_token_in(form_page.get_data(as_text=True))
    response = client.post("/dns/records/new", data=data)
    return response.status_code, unescape(response.get_data(as_text=True))


def _audit(app: Flask, action: str) -> list[AuditEntry]:
    with app.app_context():
        return list(get_session().scalars(select(AuditEntry).where(AuditEntry.action == action)))


# ------------------------------------------------------------------------ viewing


def test_zone_page_lists_editable_records_and_only_counts_dnssec_ones(
    viewer: FlaskClient,
) -> None:
    response = viewer.get("/dns/")
    html = unescape(response.get_data(as_text=True))
    assert response.status_code == 200, html
    assert "fd00:1:2::80" in html and "www.alt." in html and '"hello"' in html
    assert "RRSIG" in html and "DNSKEY" in html  # counted in the summary line
    assert 'data-type="RRSIG"' not in html and 'data-type="NSEC"' not in html
    assert 'data-type="SOA"' not in html
    assert "Delete" not in html and "Add a record" not in html  # viewers cannot change


def test_viewer_cannot_add_records(
    viewer: FlaskClient, lab: DnsLab, csrf_token_in: Callable[[str], str]
) -> None:
    token = csrf_token_in(viewer.get("/dns/").get_data(as_text=True))  # the log-out form's
    response = viewer.post(
        "/dns/records/new",
        data={"csrf_token": token, "name": "x", "type": "A", "rdata": "1.2.3.4"},
    )
    assert response.status_code == 403
    assert query(lab.named, "x.alt.", "A") == []


# ------------------------------------------------------------------ changing


def test_added_record_is_served_by_named_shown_in_axfr_and_audited(
    dns_app: Flask, operator: FlaskClient, lab: DnsLab, csrf_token_in: Callable[[str], str]
) -> None:
    status, html = _add(
        operator, csrf_token_in, name="api", ttl="120", type="AAAA", rdata="fd00:1:2::5"
    )
    assert status == 302, html
    assert wait_for_answer(lab.named, "api.alt.", "AAAA", ["fd00:1:2::5"]) == ["fd00:1:2::5"]
    added = ("api.alt.", "AAAA", "fd00:1:2::5")
    assert added in wait_for_axfr(lab.named, lab.secret, {added})
    page = operator.get("/dns/").get_data(as_text=True)
    assert 'data-name="api.alt."' in page
    [entry] = _audit(dns_app, "dns.add")
    assert entry.target == "dns:api.alt. AAAA"
    assert entry.before is None
    assert entry.after == {"name": "api.alt.", "ttl": 120, "type": "AAAA", "rdata": "fd00:1:2::5"}
    assert entry.actor.startswith("operator-")


@pytest.mark.parametrize(
    ("rdtype", "rdata", "served"),
    [
        ("A", "192.0.2.7", "192.0.2.7"),
        ("TXT", "v=1 two words", '"v=1 two words"'),
        ("SRV", "0 10 7000 www", "0 10 7000 www.alt."),
        ("MX", "10 mail.example.", "10 mail.example."),
        ("CAA", '0 issue "ca.example"', '0 issue "ca.example"'),
        ("PTR", "www.alt.", "www.alt."),
        ("NS", "ns1.alt.", "ns1.alt."),
        ("CNAME", "www", "www.alt."),
    ],
)
def test_each_common_type_can_be_added(
    operator: FlaskClient,
    lab: DnsLab,
    csrf_token_in: Callable[[str], str],
    rdtype: str,
    rdata: str,
    served: str,
) -> None:
    name = f"t-{rdtype.lower()}"
    status, html = _add(operator, csrf_token_in, name=name, type=rdtype, rdata=rdata)
    assert status == 302, html
    expected = (f"{name}.alt.", rdtype, served)
    assert expected in wait_for_axfr(lab.named, lab.secret, {expected})


def test_change_replaces_the_record_and_audits_before_and_after(
    dns_app: Flask, operator: FlaskClient, lab: DnsLab, csrf_token_in: Callable[[str], str]
) -> None:
    _seed(lab, "chg", "AAAA", "fd00:1:2::c0")
    edit = operator.get(
        "/dns/records/edit",
        query_string={"name": "chg.alt.", "type": "AAAA", "rdata": "fd00:1:2::c0"},
    )
    html = edit.get_data(as_text=True)
    assert edit.status_code == 200, html
    response = operator.post(
        "/dns/records/edit",
        data={
            "csrf_token": csrf_token_in(html),
            "old_name": "chg.alt.",
            "old_type": "AAAA",
            "old_rdata": "fd00:1:2::c0",
            "name": "chg",
            "ttl": "600",
            "type": "AAAA",
            "rdata": "fd00:1:2::c1",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    assert wait_for_answer(lab.named, "chg.alt.", "AAAA", ["fd00:1:2::c1"]) == ["fd00:1:2::c1"]
    changed = ("chg.alt.", "AAAA", "fd00:1:2::c1")
    transferred = wait_for_axfr(lab.named, lab.secret, {changed})
    assert changed in transferred
    assert ("chg.alt.", "AAAA", "fd00:1:2::c0") not in transferred
    [entry] = _audit(dns_app, "dns.change")
    assert entry.before == {"name": "chg.alt.", "ttl": 300, "type": "AAAA", "rdata": "fd00:1:2::c0"}
    assert entry.after == {"name": "chg.alt.", "ttl": 600, "type": "AAAA", "rdata": "fd00:1:2::c1"}


def test_delete_removes_the_record_and_audits_it(
    dns_app: Flask, operator: FlaskClient, lab: DnsLab, csrf_token_in: Callable[[str], str]
) -> None:
    _seed(lab, "del", "TXT", "hello")
    page = operator.get("/dns/").get_data(as_text=True)
    response = operator.post(
        "/dns/records/delete",
        data={
            "csrf_token": csrf_token_in(page),
            "name": "del.alt.",
            "type": "TXT",
            "rdata": '"hello"',
        },
    )
    assert response.status_code == 302
    assert wait_for_answer(lab.named, "del.alt.", "TXT", []) == []
    assert not any(name == "del.alt." for name, _, _ in axfr(lab.named, lab.secret))
    [entry] = _audit(dns_app, "dns.delete")
    assert entry.before == {"name": "del.alt.", "ttl": 300, "type": "TXT", "rdata": '"hello"'}
    assert entry.after is None


def test_the_zones_last_name_server_cannot_be_deleted(
    operator: FlaskClient, lab: DnsLab, csrf_token_in: Callable[[str], str]
) -> None:
    page = operator.get("/dns/").get_data(as_text=True)
    response = operator.post(
        "/dns/records/delete",
        data={"csrf_token": csrf_token_in(page), "name": "alt.", "type": "NS", "rdata": "ns1.alt."},
        follow_redirects=True,
    )
    assert "last NS record" in unescape(response.get_data(as_text=True))
    assert query(lab.named, "alt.", "NS") == ["ns1.alt."]


def test_delete_without_csrf_token_is_refused(operator: FlaskClient, lab: DnsLab) -> None:
    response = operator.post(
        "/dns/records/delete", data={"name": "notes.alt.", "type": "TXT", "rdata": '"hello"'}
    )
    assert response.status_code == 400
    assert query(lab.named, "notes.alt.", "TXT") == ['"hello"']


def test_change_of_a_record_someone_else_changed_meanwhile_is_detected(
    operator: FlaskClient, lab: DnsLab, csrf_token_in: Callable[[str], str]
) -> None:
    _seed(lab, "race", "AAAA", "fd00:1:2::d0")
    edit_page = operator.get(
        "/dns/records/edit",
        query_string={"name": "race.alt.", "type": "AAAA", "rdata": "fd00:1:2::d0"},
    ).get_data(as_text=True)
    # Another operator replaces the record between our page load and our submit.
    other = ZoneClient.from_config(lab.settings())
    other.change(
        validate_record(ORIGIN, "race", 300, "AAAA", "fd00:1:2::d0"),
        validate_record(ORIGIN, "race", 300, "AAAA", "fd00:1:2::d9"),
    )
    response = operator.post(
        "/dns/records/edit",
        data={
            "csrf_token": csrf_token_in(edit_page),
            "old_name": "race.alt.",
            "old_type": "AAAA",
            "old_rdata": "fd00:1:2::d0",
            "name": "race",
            "ttl": "300",
            "type": "AAAA",
            "rdata": "fd00:1:2::d1",
        },
    )
    html = unescape(response.get_data(as_text=True))
    assert response.status_code == 400
    assert "no longer has it" in html and "reload the zone" in html
    assert query(lab.named, "race.alt.", "AAAA") == ["fd00:1:2::d9"]


# ------------------------------------------------------- validation before sending


@pytest.mark.parametrize(
    ("fields", "field_label", "message"),
    [
        ({"name": "x.example.", "rdata": "192.0.2.1"}, "Name", "outside the zone alt."),
        ({"name": "a b", "rdata": "192.0.2.1"}, "Name", "contains spaces"),
        ({"name": "", "rdata": "192.0.2.1"}, "Name", "is required"),
        ({"name": "x", "ttl": "0", "rdata": "192.0.2.1"}, "TTL (seconds)", "between 1 and 604800"),
        ({"name": "x", "ttl": "soon", "rdata": "192.0.2.1"}, "TTL (seconds)", "not a whole number"),
        ({"name": "x", "type": "AAAA", "rdata": "192.0.2.1"}, "Data", "not valid AAAA data"),
        ({"name": "x", "type": "A", "rdata": "fd00::1"}, "Data", "not valid A data"),
        ({"name": "x", "type": "MX", "rdata": "mail.alt."}, "Data", "not valid MX data"),
        ({"name": "x", "type": "SOA", "rdata": "x"}, "Type", "cannot be edited here"),
        ({"name": "x", "type": "RRSIG", "rdata": "x"}, "Type", "cannot be edited here"),
        ({"name": "x", "type": "A", "rdata": ""}, "Data", "is required"),
        ({"name": "@", "type": "CNAME", "rdata": "www"}, "Name", "apex (@) cannot be a CNAME"),
        ({"name": "www", "type": "CNAME", "rdata": "x.alt."}, "Name", "a CNAME must be the only"),
        ({"name": "alias", "type": "A", "rdata": "192.0.2.1"}, "Name", "is a CNAME (an alias)"),
    ],
)
def test_invalid_input_is_rejected_before_anything_is_sent(
    operator: FlaskClient,
    lab: DnsLab,
    csrf_token_in: Callable[[str], str],
    fields: dict[str, str],
    field_label: str,
    message: str,
) -> None:
    before = axfr(lab.named, lab.secret)
    serial = update_serial(lab.named)
    status, html = _add(operator, csrf_token_in, **fields)
    html = unescape(html)
    assert status == 400
    assert f"{field_label}: " in html and message in html
    assert axfr(lab.named, lab.secret) == before
    assert update_serial(lab.named) == serial


# --------------------------------------------------------------- server refusals


def test_wrong_tsig_secret_is_reported_as_a_rejected_key(
    make_app: Callable[..., Flask],
    lab: DnsLab,
    create_user: Callable[..., Any],
    login: Callable[..., None],
) -> None:
    app = make_app(**lab.settings(DNS_TSIG_SECRET=lab.reader_secret))
    client = _logged_in(app, "viewer", create_user, login)
    response = client.get("/dns/")
    html = response.get_data(as_text=True)
    assert response.status_code == 502
    assert "TSIG key rejected" in html and "signature did not verify" in html


def test_unknown_tsig_key_is_reported_as_a_rejected_key(
    make_app: Callable[..., Flask],
    lab: DnsLab,
    create_user: Callable[..., Any],
    login: Callable[..., None],
    csrf_token_in: Callable[[str], str],
) -> None:
    app = make_app(**lab.settings(DNS_TSIG_KEY_NAME="no-such-key"))
    client = _logged_in(app, "operator", create_user, login)
    status, html = _add(client, csrf_token_in, name="x", rdata="192.0.2.1")
    assert status == 400
    assert "TSIG key rejected" in html and "does not know the key" in html
    assert query(lab.named, "x.alt.", "A") == []


def test_key_without_update_grant_is_refused_with_a_clear_message(
    make_app: Callable[..., Flask],
    lab: DnsLab,
    create_user: Callable[..., Any],
    login: Callable[..., None],
    csrf_token_in: Callable[[str], str],
) -> None:
    app = make_app(
        **lab.settings(DNS_TSIG_KEY_NAME=READ_ONLY_KEY, DNS_TSIG_SECRET=lab.reader_secret)
    )
    client = _logged_in(app, "operator", create_user, login)
    assert client.get("/dns/").status_code == 200  # it may transfer the zone, not change it
    status, html = _add(client, csrf_token_in, name="x", rdata="192.0.2.1")
    assert status == 400
    assert "REFUSED" in html and "update-policy" in html
    assert query(lab.named, "x.alt.", "A") == []


def test_unsigned_update_and_transfer_are_refused(lab: DnsLab) -> None:
    unsigned = ZoneClient(
        ZoneSettings(
            server=lab.named.address,
            port=lab.named.port,
            zone=ORIGIN,
            key_name="",
            secret="",
            algorithm="hmac-sha256",
            timeout=2.0,
        )
    )
    with pytest.raises(DnsError) as update_failure:
        unsigned.add(validate_record(ORIGIN, "x", 300, "A", "192.0.2.1"))
    assert update_failure.value.kind == "refused"
    assert "not signed" in update_failure.value.message
    with pytest.raises(DnsError) as transfer_failure:
        unsigned.read_zone()
    assert transfer_failure.value.kind == "refused"
    assert query(lab.named, "x.alt.", "A") == []


def test_name_outside_the_zone_is_reported_as_notzone(lab: DnsLab) -> None:
    client = ZoneClient.from_config(lab.settings())
    update = client.update_message()
    update.add(dns.name.from_text("x.example."), 300, "A", "192.0.2.1")
    with pytest.raises(DnsError) as failure:
        client.send(update, "adding x.example.")
    assert failure.value.kind == "notzone"
    assert "outside the zone alt." in failure.value.message


def test_failed_prerequisites_are_explained(lab: DnsLab) -> None:
    """What a concurrent edit looks like from the server's side: RRset no longer as seen
    (NXRRSET), name in use when a CNAME needs it free (YXDOMAIN), CNAME appeared (YXRRSET)."""
    client = ZoneClient.from_config(lab.settings())
    www = dns.name.from_text("www.alt.")
    alias = dns.name.from_text("alias.alt.")

    stale = client.update_message()
    stale.present(
        www, prerequisite_rdataset([validate_record(ORIGIN, "www", 300, "AAAA", "fd00::9")])
    )
    stale.add(www, 300, "AAAA", "fd00::10")
    with pytest.raises(DnsError) as nxrrset:
        client.send(stale, "changing www")
    assert nxrrset.value.kind == "changed"
    assert "changed on the server since you loaded them (NXRRSET)" in nxrrset.value.message

    in_use = client.update_message()
    in_use.absent(www)
    in_use.add(www, 300, "CNAME", "alias.alt.")
    with pytest.raises(DnsError) as yxdomain:
        client.send(in_use, "adding a CNAME at www")
    assert yxdomain.value.kind == "conflict"
    assert "already in use (YXDOMAIN)" in yxdomain.value.message

    became_alias = client.update_message()
    became_alias.absent(alias, "CNAME")
    became_alias.add(alias, 300, "A", "192.0.2.1")
    with pytest.raises(DnsError) as yxrrset:
        client.send(became_alias, "adding an A at alias")
    assert yxrrset.value.kind == "conflict"
    assert "(YXRRSET)" in yxrrset.value.message
    assert query(lab.named, "www.alt.", "AAAA") == ["fd00:1:2::80"]


def test_a_zone_the_server_does_not_serve_is_reported_as_notauth(lab: DnsLab) -> None:
    client = ZoneClient.from_config(lab.settings(DNS_ZONE="elsewhere.example."))
    update = client.update_message()
    update.add(dns.name.from_text("x.elsewhere.example."), 300, "A", "192.0.2.1")
    with pytest.raises(DnsError) as failure:
        client.send(update, "adding x")
    assert failure.value.kind == "notauth"
    assert "not authoritative for elsewhere.example." in failure.value.message
    with pytest.raises(DnsError) as lookup_failure:  # what the pages meet first
        client.add(validate_record(client.origin, "x", 300, "A", "192.0.2.1"))
    assert lookup_failure.value.kind == "notauth"
    assert "does not serve the zone elsewhere.example." in lookup_failure.value.message


def test_server_that_never_answers_gives_a_timeout_message(
    make_app: Callable[..., Flask],
    lab: DnsLab,
    create_user: Callable[..., Any],
    login: Callable[..., None],
) -> None:
    with silent_tcp_port() as port:
        app = make_app(**lab.settings(DNS_PORT=port, DNS_TIMEOUT=0.5))
        client = _logged_in(app, "viewer", create_user, login)
        response = client.get("/dns/")
    html = response.get_data(as_text=True)
    assert response.status_code == 502
    assert f"no answer from the DNS server 127.0.0.1 port {port} within 0.5 s" in html


def test_server_not_listening_gives_a_connection_refused_message(
    make_app: Callable[..., Flask],
    lab: DnsLab,
    create_user: Callable[..., Any],
    login: Callable[..., None],
    csrf_token_in: Callable[[str], str],
) -> None:
    with closed_port() as port:
        app = make_app(**lab.settings(DNS_PORT=port))
        client = _logged_in(app, "operator", create_user, login)
        status, html = _add(client, csrf_token_in, name="x", rdata="192.0.2.1")
    assert status == 400
    assert f"127.0.0.1 port {port} refused the connection" in html
    assert "check DNS_SERVER and DNS_PORT" in html


def test_dns_pages_explain_when_dns_is_not_configured(viewer_client: FlaskClient) -> None:
    response = viewer_client.get("/dns/")
    assert response.status_code == 503
    assert "DNS management is not configured" in response.get_data(as_text=True)


# ----------------------------------------------------------------- rndc status


def test_status_page_shows_named_status_through_rndc(viewer: FlaskClient) -> None:
    response = viewer.get("/dns/status")
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html
    assert "BIND 9.18" in html
    assert "<dt>Running</dt><dd>yes</dd>" in html


def test_status_page_explains_an_unreachable_control_channel(
    make_app: Callable[..., Flask],
    lab: DnsLab,
    create_user: Callable[..., Any],
    login: Callable[..., None],
) -> None:
    with closed_port() as port:
        app = make_app(**lab.settings(RNDC_PORT=port))
        client = _logged_in(app, "viewer", create_user, login)
        response = client.get("/dns/status")
    html = response.get_data(as_text=True)
    assert response.status_code == 502
    assert f"rndc could not reach named at 127.0.0.1 port {port}" in html
    assert "connection refused" in html


def test_rndc_status_parsing() -> None:
    text = (
        "version: BIND 9.18.49 (Extended Support Version) <id:>\n"
        "number of zones: 3 (0 automatic)\n"
        "xfers running: 1\n"
        "query logging is OFF\n"
        "server is up and running\n"
    )
    assert parse_rndc_status(text) == {
        "running": "yes",
        "version": "BIND 9.18.49 (Extended Support Version) <id:>",
        "zones": "3 (0 automatic)",
        "transfers_running": "1",
        "query_logging": "off",
    }
    assert parse_rndc_status("")["running"] == "no"


# --------------------------------------------------------------------- metrics


def test_dns_updates_are_counted_by_result(
    operator: FlaskClient, csrf_token_in: Callable[[str], str]
) -> None:
    def count(result: str) -> float:
        text = operator.get("/metrics").get_data(as_text=True)
        needle = f'altmesh_dashboard_dns_updates_total{{result="{result}"}} '
        for line in text.splitlines():
            if line.startswith(needle):
                return float(line.removeprefix(needle))
        return 0.0

    success, invalid = count("success"), count("invalid")
    assert _add(operator, csrf_token_in, name="m1", rdata="192.0.2.1")[0] == 302
    assert _add(operator, csrf_token_in, name="m2", rdata="not-an-ip")[0] == 400
    assert count("success") == success + 1
    assert count("invalid") == invalid + 1
