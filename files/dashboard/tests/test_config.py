"""Configuration from environment and file, checked at start-up with messages that name the
setting, its source and what is expected."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from altmesh_dashboard.config import ConfigError, dns_is_configured, load_config

KEY = "k" * 40


def test_defaults_and_environment_are_merged() -> None:
    config = load_config(
        environ={
            "ALTMESH_DASHBOARD_SECRET_KEY": KEY,
            "ALTMESH_DASHBOARD_DNS_PORT": "5353",
            "ALTMESH_DASHBOARD_SESSION_COOKIE_SECURE": "no",
        }
    )
    assert config["DNS_PORT"] == 5353
    assert config["SESSION_COOKIE_SECURE"] is False
    assert config["DNS_ZONE"] == "alt."
    assert config["DNS_TSIG_ALGORITHM"] == "hmac-sha256"
    assert not dns_is_configured(config)


def test_file_is_read_and_environment_overrides_it(tmp_path: Path) -> None:
    path = tmp_path / "dashboard.toml"
    path.write_text(
        f'secret_key = "{KEY}"\nDNS_SERVER = "127.0.0.1"\nDNS_PORT = 5300\n'
        'DNS_TSIG_KEY_NAME = "dashboard"\nDNS_TSIG_SECRET = "c2VjcmV0c2VjcmV0"\n'
        'NETWORK_PREFIX = "fd12:3456:789a::/48"\n'
    )
    config = load_config(
        environ={"ALTMESH_DASHBOARD_CONFIG": str(path), "ALTMESH_DASHBOARD_DNS_PORT": "5301"}
    )
    assert config["DNS_PORT"] == 5301
    assert config["DNS_SERVER"] == "127.0.0.1"
    assert dns_is_configured(config)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "SECRET_KEY is required"),
        ({"ALTMESH_DASHBOARD_SECRET_KEY": "short"}, "SECRET_KEY: must be at least 32"),
        (
            {"ALTMESH_DASHBOARD_DNS_PORT": "fifty"},
            "DNS_PORT (from environment): expected a whole number, got 'fifty'",
        ),
        ({"ALTMESH_DASHBOARD_DNS_PORT": "70000"}, "DNS_PORT: must be a port number"),
        ({"ALTMESH_DASHBOARD_DNS_SERVER": "ns1.example"}, "'ns1.example' is not an IPv4 or IPv6"),
        (
            {"ALTMESH_DASHBOARD_DNS_SERVER": "127.0.0.1"},
            "DNS is partly configured: DNS_TSIG_KEY_NAME, DNS_TSIG_SECRET missing",
        ),
        ({"ALTMESH_DASHBOARD_DNS_TSIG_ALGORITHM": "md5"}, "DNS_TSIG_ALGORITHM: must be one of"),
        ({"ALTMESH_DASHBOARD_DNS_ZONE": "alt"}, "DNS_ZONE: must be an absolute name"),
        (
            {"ALTMESH_DASHBOARD_NETWORK_PREFIX": "2001:db8::/48"},
            "NETWORK_PREFIX: prefix '2001:db8::/48' is not an RFC 4193",
        ),
        ({"ALTMESH_DASHBOARD_DATABASE_URL": "mysql://x"}, "DATABASE_URL: must be a SQLAlchemy"),
        (
            {"ALTMESH_DASHBOARD_SESION_COOKIE_SECURE": "1"},
            "ALTMESH_DASHBOARD_SESION_COOKIE_SECURE (from environment): unknown setting",
        ),
        (
            {"ALTMESH_DASHBOARD_RELAY_DOWN_AFTER_SECONDS": "10"},
            "RELAY_DOWN_AFTER_SECONDS must be greater than RELAY_STALE_AFTER_SECONDS",
        ),
    ],
)
def test_bad_settings_are_named_with_the_problem(environ: dict[str, str], message: str) -> None:
    environ = (
        {"ALTMESH_DASHBOARD_SECRET_KEY": KEY, **environ}
        if "SECRET_KEY" not in str(environ) and environ
        else environ
    )
    with pytest.raises(ConfigError) as caught:
        load_config(environ=environ)
    assert message in caught.value.message


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(environ={"ALTMESH_DASHBOARD_DNS_PORT": "x", "ALTMESH_DASHBOARD_FOO": "1"})
    text = caught.value.message
    assert "SECRET_KEY is required" in text and "DNS_PORT" in text and "FOO" in text


def test_unreadable_or_invalid_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(environ={"ALTMESH_DASHBOARD_CONFIG": str(tmp_path / "missing.toml")})
    bad = tmp_path / "bad.toml"
    bad.write_text("secret_key = \n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(environ={"ALTMESH_DASHBOARD_CONFIG": str(bad)})


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALTMESH_DASHBOARD_")}
    env.update(extra)
    return env


def test_flask_cli_prints_the_problem_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "altmesh_dashboard", "users", "list"],
        env=_clean_env(ALTMESH_DASHBOARD_DNS_PORT="x"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode != 0
    assert "SECRET_KEY is required" in result.stderr
    assert "DNS_PORT (from environment): expected a whole number" in result.stderr
    assert "Traceback" not in result.stderr


def test_gunicorn_refuses_to_start_with_a_clear_message(tmp_path: Path) -> None:
    from conftest import gunicorn_bind_arguments, listening_socket  # as the live server

    with listening_socket() as sock:
        bind, _url = gunicorn_bind_arguments(sock)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--no-control-socket",  # this test runs gunicorn without the packaged config
                *bind,
                "altmesh_dashboard.wsgi:app",
            ],
            env=_clean_env(ALTMESH_DASHBOARD_SECRET_KEY="short"),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            check=False,
            pass_fds=(sock.fileno(),),
        )
    assert result.returncode != 0
    assert "SECRET_KEY: must be at least 32 characters" in result.stderr
    assert "Traceback" not in result.stderr
