"""Configuration: defaults, then a TOML file, then ALTMESH_DASHBOARD_* variables, then the mapping
given to create_app(). Every value is checked at start-up; a bad one stops the app with a message
naming the key, where it came from and what is expected."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from altmesh.protocol.address import network_prefix

ENV_PREFIX = "ALTMESH_DASHBOARD_"
CONFIG_FILE_ENV = ENV_PREFIX + "CONFIG"

TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1")


class StartupError(click.ClickException):
    """The app cannot start (a bad setting, an unreachable database); the message says why.
    Exit status 3, like gunicorn's "worker failed to boot", for the CLI and gunicorn alike."""

    exit_code = 3


class ConfigError(StartupError):
    """A configuration value is missing or wrong; the message says which and why."""


@dataclass(frozen=True)
class Setting:
    kind: type  # str, int, float or bool
    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None  # returns a problem, or None when fine
    secret: bool = False


def _at_least(minimum: float) -> Callable[[Any], str | None]:
    return lambda value: None if value >= minimum else f"must be at least {minimum}"


def _port(value: int) -> str | None:
    return None if 1 <= value <= 65535 else "must be a port number between 1 and 65535"


def _ip_address(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IPv4 or IPv6 address"
    return None


def _secret_key(value: str) -> str | None:
    return None if len(value) >= 32 else "must be at least 32 characters of random data"


def _base64(value: str) -> str | None:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return "must be base64 (as in a BIND `key` statement's secret)"
    return None


def _tsig_algorithm(value: str) -> str | None:
    return None if value in TSIG_ALGORITHMS else f"must be one of {', '.join(TSIG_ALGORITHMS)}"


def _zone(value: str) -> str | None:
    return (
        None if value.endswith(".") and len(value) > 1 else "must be an absolute name like 'alt.'"
    )


def _network_prefix(value: str) -> str | None:
    """The relay's rule (altmesh.protocol.address): an RFC 4193 /48 inside fd00::/8."""
    try:
        network_prefix(value)
    except ValueError as error:
        return f"{error} (like fd12:3456:789a::/48)"
    return None


def _database_url(value: str) -> str | None:
    if value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
        return None
    return "must be a SQLAlchemy URL starting with sqlite:/// or postgresql+psycopg://"


def _log_level(value: str) -> str | None:
    levels = ("DEBUG", "INFO", "WARNING", "ERROR")
    return None if value.upper() in levels else f"must be one of {', '.join(levels)}"


SETTINGS: dict[str, Setting] = {
    "SECRET_KEY": Setting(str, None, "signs session cookies and CSRF tokens", _secret_key, True),
    "DATABASE_URL": Setting(
        str,
        "",
        "SQLAlchemy URL; empty means SQLite in the instance folder",
        lambda v: None if v == "" else _database_url(v),
        True,
    ),
    "DATABASE_POOL_SIZE": Setting(
        int,
        5,
        "database connections a process keeps open (up to twice this at a peak); the packaged "
        "gunicorn config raises it to a worker's thread count",
        _at_least(1),
    ),
    "AUTO_MIGRATE": Setting(bool, True, "apply database migrations when the app starts"),
    "SESSION_COOKIE_SECURE": Setting(bool, True, "send the session cookie over HTTPS only"),
    "SESSION_LIFETIME_SECONDS": Setting(int, 8 * 3600, "how long a login lasts", _at_least(60)),
    "LOGIN_MAX_FAILURES": Setting(int, 5, "failed logins allowed per window", _at_least(1)),
    "LOGIN_WINDOW_SECONDS": Setting(int, 300, "login throttling window", _at_least(1)),
    "RELAY_STALE_AFTER_SECONDS": Setting(
        int, 90, "heartbeat age that makes a relay stale", _at_least(1)
    ),
    "RELAY_DOWN_AFTER_SECONDS": Setting(
        int, 300, "heartbeat age that makes a relay down", _at_least(1)
    ),
    "API_MAX_BODY_BYTES": Setting(
        int,
        524288,
        "largest API request body (a heartbeat listing 10000 attached nodes is ~430 KB)",
        _at_least(1024),
    ),
    "HEARTBEAT_HISTORY": Setting(int, 1000, "heartbeats kept per relay", _at_least(10)),
    "METRICS_TOKEN": Setting(
        str,
        "",
        "bearer token Prometheus sends to scrape /metrics",
        lambda v: (
            None
            if v == "" or len(v) >= 16
            else "must be at least 16 characters (or empty to require a login)"
        ),
        True,
    ),
    "LOG_LEVEL": Setting(str, "INFO", "logging level", _log_level),
    "HSTS_MAX_AGE_SECONDS": Setting(
        int,
        31536000,
        "Strict-Transport-Security max-age sent on HTTPS answers (0: no HSTS header)",
        _at_least(0),
    ),
    "PAGE_REFRESH_SECONDS": Setting(
        int,
        30,
        "status pages reload themselves this often (0: never)",
        lambda v: None if v == 0 or v >= 5 else "must be 0 (off) or at least 5",
    ),
    "PROXY_COUNT": Setting(
        int,
        0,
        "reverse proxies in front of the app (trust that many X-Forwarded-* hops)",
        _at_least(0),
    ),
    "DNS_SERVER": Setting(
        str,
        "",
        "address of the primary named for the zone",
        lambda v: None if v == "" else _ip_address(v),
    ),
    "DNS_PORT": Setting(int, 53, "DNS port of DNS_SERVER", _port),
    "DNS_ZONE": Setting(str, "alt.", "the zone the dashboard manages", _zone),
    "DNS_TSIG_KEY_NAME": Setting(str, "", "TSIG key name allowed to update and transfer the zone"),
    "DNS_TSIG_SECRET": Setting(
        str, "", "TSIG secret (base64)", lambda v: None if v == "" else _base64(v), True
    ),
    "DNS_TSIG_ALGORITHM": Setting(str, "hmac-sha256", "TSIG algorithm", _tsig_algorithm),
    "DNS_TIMEOUT": Setting(float, 5.0, "seconds to wait for the DNS server", _at_least(0.1)),
    "RNDC_ADDRESS": Setting(str, "127.0.0.1", "rndc control channel address", _ip_address),
    "RNDC_PORT": Setting(int, 953, "rndc control channel port", _port),
    "RNDC_KEY_FILE": Setting(str, "", "rndc key file (empty: rndc's default)"),
    "NETWORK_PREFIX": Setting(
        str,
        "",
        "the network's ULA /48 (relay addresses must be in it)",
        lambda v: None if v == "" else _network_prefix(v),
    ),
}

DNS_REQUIRED_KEYS = ("DNS_SERVER", "DNS_TSIG_KEY_NAME", "DNS_TSIG_SECRET")


def _shown(key: str, raw: Any) -> str:
    """How a wrong value is quoted back in an error: a secret's value never is (a secret typed
    into the wrong place, or slightly wrong, must not reach a log or a terminal)."""
    if SETTINGS[key].secret:
        return f"a {type(raw).__name__} (value not shown: it is a secret)"
    return repr(raw)


def _convert(key: str, raw: Any, source: str) -> Any:
    kind = SETTINGS[key].kind
    shown = _shown(key, raw)
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(raw, str) and raw.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key} (from {source}): expected true or false, got {shown}")
    if kind is int:
        if isinstance(raw, bool):
            raise ConfigError(f"{key} (from {source}): expected a whole number, got {shown}")
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{key} (from {source}): expected a whole number, got {shown}"
            ) from None
    if kind is float:
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} (from {source}): expected a number, got {shown}") from None
    if not isinstance(raw, str):
        raise ConfigError(f"{key} (from {source}): expected a string, got {shown}")
    return raw.strip()


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return {key.upper(): value for key, value in data.items()}


def load_config(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Merge and validate every source; raise ConfigError listing every problem found."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {key: setting.default for key, setting in SETTINGS.items()}
    sources: list[tuple[str, Mapping[str, Any]]] = []
    config_file = (overrides or {}).get("CONFIG_FILE") or environ.get(CONFIG_FILE_ENV)
    if config_file:
        sources.append((f"file {config_file}", _read_file(Path(config_file))))
    sources.append(
        (
            "environment",
            {
                name.removeprefix(ENV_PREFIX): value
                for name, value in environ.items()
                if name.startswith(ENV_PREFIX) and name != CONFIG_FILE_ENV
            },
        )
    )
    passthrough: dict[str, Any] = {}
    if overrides:
        sources.append(("create_app()", {k: v for k, v in overrides.items() if k != "CONFIG_FILE"}))
    problems: list[str] = []
    for source, mapping in sources:
        for key, raw in mapping.items():
            if key not in SETTINGS:
                if source == "create_app()":
                    passthrough[key] = raw  # Flask's own keys (TESTING, WTF_CSRF_ENABLED, ...)
                    continue
                shown = ENV_PREFIX + key if source == "environment" else key
                problems.append(f"{shown} (from {source}): unknown setting")
                continue
            try:
                values[key] = _convert(key, raw, source)
            except ConfigError as exc:
                problems.append(str(exc))
    for key, setting in SETTINGS.items():
        value = values[key]
        if value is None:
            problems.append(
                f"{key} is required ({setting.help}): set {ENV_PREFIX}{key} or {key} in the file"
            )
        elif setting.check is not None and (problem := setting.check(value)):
            problems.append(f"{key}: {problem}")
    if values["RELAY_DOWN_AFTER_SECONDS"] <= values["RELAY_STALE_AFTER_SECONDS"]:
        problems.append("RELAY_DOWN_AFTER_SECONDS must be greater than RELAY_STALE_AFTER_SECONDS")
    dns_given = [key for key in DNS_REQUIRED_KEYS if values[key]]
    if dns_given and len(dns_given) != len(DNS_REQUIRED_KEYS):
        missing = [key for key in DNS_REQUIRED_KEYS if not values[key]]
        problems.append(
            "DNS is partly configured: " + ", ".join(missing) + " missing "
            f"(set all of {', '.join(DNS_REQUIRED_KEYS)} or none of them)"
        )
    if problems:
        raise ConfigError("invalid dashboard configuration:\n  - " + "\n  - ".join(problems))
    values.update(passthrough)
    return values


def dns_is_configured(config: Mapping[str, Any]) -> bool:
    """True when the dashboard has a DNS server and TSIG key to publish relay records with."""
    return all(config.get(key) for key in DNS_REQUIRED_KEYS)
