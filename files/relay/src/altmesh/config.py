"""One TOML config file per node (relay, client, service), validated into typed dataclasses.

Every problem is reported as a `ConfigError` naming the field (dotted path, as written in the file)
and what is wrong with it, so `altmesh check-config FILE` can print it and exit non-zero.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from altmesh.protocol.link_config import LinkConfig

ROLES = ("relay", "client", "service")
DEFAULT_RELAY_PORT = 7400


class ConfigError(Exception):
    """A config file problem: `field` is the dotted key, `problem` says what is wrong."""

    def __init__(self, field_name: str, problem: str, source: str = "") -> None:
        self.field = field_name
        self.problem = problem
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field_name}: {problem}")


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class NetworkConfig:
    name: str
    prefix: ipaddress.IPv6Network


@dataclass(frozen=True)
class LinkTuning:
    rekey_after_seconds: float = 120.0
    rekey_after_messages: int = 2**28
    reject_after_seconds: float = 180.0
    keepalive_seconds: float = 15.0
    handshake_timeout_seconds: float = 10.0


@dataclass(frozen=True)
class NodeConfig:
    private_key_file: Path
    previous_private_key_file: Path | None
    state_dir: Path


@dataclass(frozen=True)
class LogConfig:
    events_file: Path | None  # None: security events go to stderr
    level: str = "info"


@dataclass(frozen=True)
class RelaySettings:
    listen: HostPort
    metrics_listen: HostPort | None
    policy: str  # "open" or "allowlist"
    allowed_keys: tuple[str, ...]
    allowed_keys_file: Path | None
    handshake_rate: float
    handshake_burst: int
    drain_seconds: float
    max_links: int
    forwarded_capture_file: Path | None = None


@dataclass(frozen=True)
class RelayEndpoint:
    address: HostPort
    public_key: str


@dataclass(frozen=True)
class DnsSettings:
    servers: tuple[HostPort, ...]
    trust_anchors: tuple[str, ...]
    timeout_seconds: float = 3.0


@dataclass(frozen=True)
class Forward:
    local_port: int
    name: str
    port: int

    def __str__(self) -> str:
        return f"{self.local_port}:{self.name}:{self.port}"


@dataclass(frozen=True)
class ClientSettings:
    socks_listen: HostPort | None
    forwards: tuple[Forward, ...]
    control_socket: Path
    reconnect_min_seconds: float
    reconnect_max_seconds: float


@dataclass(frozen=True)
class ServiceSettings:
    name: str | None
    target: HostPort | None
    ports: tuple[int, ...]  # empty: every port reaches the target


@dataclass(frozen=True)
class Config:
    source: Path
    role: str
    network: NetworkConfig
    node: NodeConfig
    link: LinkTuning
    log: LogConfig
    relay: RelaySettings | None = None
    relays: tuple[RelayEndpoint, ...] = ()
    dns: DnsSettings | None = None
    client: ClientSettings | None = None
    service: ServiceSettings | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def link_config(self) -> LinkConfig:
        """The protocol core's settings for every link this node makes or accepts."""
        return LinkConfig(
            network=self.network.name,
            prefix=self.network.prefix,
            rekey_after_time=self.link.rekey_after_seconds,
            rekey_after_messages=self.link.rekey_after_messages,
            reject_after_time=self.link.reject_after_seconds,
            keepalive_interval=self.link.keepalive_seconds,
            handshake_timeout=self.link.handshake_timeout_seconds,
        )


# ---------------------------------------------------------------- value parsers (shared with CLI)


def parse_host_port(text: str, field_name: str, default_port: int | None = None) -> HostPort:
    """`host:port`, `[v6]:port`; a bare host takes `default_port` when one is given."""
    if not isinstance(text, str) or not text:
        raise ConfigError(field_name, "must be a non-empty string like 'HOST:PORT'")
    host: str
    port_text: str | None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(field_name, f"{text!r}: '[' without closing ']'")
        host = text[1:end]
        rest = text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ConfigError(field_name, f"{text!r}: expected ':PORT' after ']'")
        port_text = rest[1:] if rest else None
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(field_name, f"{host!r} is not an IPv6 address") from None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif text.count(":") > 1:
        raise ConfigError(field_name, f"{text!r}: write IPv6 addresses as '[ADDRESS]:PORT'")
    else:
        host, port_text = text, None
    if not host:
        raise ConfigError(field_name, f"{text!r}: host is empty")
    if port_text is None:
        if default_port is None:
            raise ConfigError(field_name, f"{text!r}: port is missing (write 'HOST:PORT')")
        return HostPort(host, default_port)
    return HostPort(host, parse_port(port_text, field_name))


def parse_port(value: object, field_name: str, allow_zero: bool = False) -> int:
    if isinstance(value, str):
        if not value.isdigit():
            raise ConfigError(field_name, f"port {value!r} is not a number")
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(field_name, "port must be an integer")
    low = 0 if allow_zero else 1
    if not low <= value <= 65535:
        raise ConfigError(field_name, f"port {value} is outside {low}..65535")
    return value


def parse_forward(text: str, field_name: str) -> Forward:
    """`LOCAL_PORT:NAME:PORT`, e.g. `8080:web.alt:80`."""
    parts = text.split(":") if isinstance(text, str) else []
    if len(parts) != 3:
        raise ConfigError(field_name, f"{text!r} must look like 'LOCAL_PORT:NAME:PORT'")
    local, name, port = parts
    return Forward(
        parse_port(local, field_name),
        parse_alt_name(name, field_name),
        parse_port(port, field_name),
    )


def parse_alt_name(name: object, field_name: str) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError(field_name, "must be a name ending in .alt, like 'web.alt'")
    bare = name.rstrip(".").lower()
    labels = bare.split(".")
    if len(labels) < 2 or labels[-1] != "alt":
        raise ConfigError(field_name, f"{name!r} is not a .alt name (like 'web.alt')")
    for label in labels:
        if not label or len(label) > 63 or not all(c.isalnum() or c in "-_" for c in label):
            raise ConfigError(field_name, f"{name!r}: label {label!r} is not a valid DNS label")
    return bare


def parse_public_key(value: object, field_name: str) -> str:
    from altmesh.keyfile import decode_public_key

    if not isinstance(value, str):
        raise ConfigError(field_name, "must be a base64 public key string")
    try:
        decode_public_key(value)
    except ValueError as err:
        raise ConfigError(field_name, str(err)) from None
    return value.strip()


# ---------------------------------------------------------------- table readers


class _Table:
    """A TOML table being read: tracks which keys were used so unknown keys are reported."""

    def __init__(self, data: object, path: str, source: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(path, "must be a table", source)
        self.data: dict[str, Any] = data
        self.path = path
        self.source = source
        self.used: set[str] = set()

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.name(key), problem, self.source)

    def get(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def has(self, key: str) -> bool:
        return key in self.data

    def string(self, key: str, default: str | None = None, required: bool = False) -> str | None:
        value = self.get(key)
        if value is None:
            if required:
                raise self.error(key, "is required")
            return default
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, "must be a non-empty string")
        return value.strip()

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, "must be a number")
        if not low <= value <= high:
            raise self.error(key, f"{value} is outside {low:g}..{high:g}")
        return float(value)

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, "must be an integer")
        if not low <= value <= high:
            raise self.error(key, f"{value} is outside {low}..{high}")
        return value

    def string_list(self, key: str) -> list[str]:
        value = self.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "must be a list of strings")
        return list(value)

    def path_value(self, key: str, base: Path, required: bool = False) -> Path | None:
        text = self.string(key, required=required)
        if text is None:
            return None
        path = Path(text)
        return path if path.is_absolute() else (base / path)

    def table(self, key: str, required: bool = False) -> _Table:
        value = self.get(key)
        if value is None:
            if required:
                raise ConfigError(self.name(key), "table is required", self.source)
            value = {}
        return _Table(value, self.name(key), self.source)

    def check_unknown(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.error(unknown[0], "unknown option (check the spelling; see docs)")


def load_config(path: str | Path) -> Config:
    """Read and validate a node config file; raise ConfigError naming the field at fault."""
    path = Path(path)
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError("(file)", f"cannot read: {err.strerror}", source) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("(file)", "is not UTF-8 text", source) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("(file)", f"is not valid TOML: {err}", source) from None
    return parse_config(data, path)


def parse_config(data: dict[str, Any], path: Path) -> Config:
    source = str(path)
    base = path.parent.resolve()
    top = _Table(data, "", source)
    role = top.string("role", required=True)
    if role not in ROLES:
        raise top.error("role", f"{role!r} is not one of {', '.join(ROLES)}")

    network_table = top.table("network", required=True)
    network_name = network_table.string("name", required=True)
    assert network_name is not None
    if len(network_name) > 64 or not network_name.isprintable():
        raise network_table.error("name", "must be printable and at most 64 characters")
    prefix_text = network_table.string("prefix", required=True)
    network = NetworkConfig(network_name, _parse_prefix(prefix_text, network_table))
    network_table.check_unknown()

    node_table = top.table("node", required=True)
    key_file = node_table.path_value("private_key_file", base, required=True)
    assert key_file is not None
    previous_key = node_table.path_value("previous_private_key_file", base)
    state_dir = node_table.path_value("state_dir", base, required=True)
    assert state_dir is not None
    node = NodeConfig(key_file, previous_key, state_dir)
    node_table.check_unknown()

    link_table = top.table("link")
    link = LinkTuning(
        rekey_after_seconds=link_table.number("rekey_after_seconds", 120.0, 1.0, 120.0),
        rekey_after_messages=link_table.integer("rekey_after_messages", 2**28, 16, 2**28),
        reject_after_seconds=link_table.number("reject_after_seconds", 180.0, 2.0, 180.0),
        keepalive_seconds=link_table.number("keepalive_seconds", 15.0, 1.0, 3600.0),
        handshake_timeout_seconds=link_table.number("handshake_timeout_seconds", 10.0, 1.0, 60.0),
    )
    if link.reject_after_seconds <= link.rekey_after_seconds:
        raise link_table.error(
            "reject_after_seconds",
            f"must be greater than rekey_after_seconds ({link.rekey_after_seconds:g})",
        )
    link_table.check_unknown()

    log_table = top.table("log")
    level = log_table.string("level", "info") or "info"
    if level not in ("debug", "info", "warning", "error"):
        raise log_table.error("level", f"{level!r} is not one of debug, info, warning, error")
    log = LogConfig(log_table.path_value("events_file", base), level)
    log_table.check_unknown()

    relay_settings = None
    relays: tuple[RelayEndpoint, ...] = ()
    dns = None
    client = None
    service = None
    if role == "relay":
        relay_settings = _parse_relay(top.table("relay", required=True), base)
    else:
        relays = _parse_relays(top, source)
        dns = _parse_dns(top.table("dns"), role)
        client = _parse_client(top.table("client"), state_dir)
        service = _parse_service(top.table("service"), role)
    top.check_unknown()
    return Config(
        source=path,
        role=role,
        network=network,
        node=node,
        link=link,
        log=log,
        relay=relay_settings,
        relays=relays,
        dns=dns,
        client=client,
        service=service,
    )


def _parse_prefix(text: str | None, table: _Table) -> ipaddress.IPv6Network:
    try:
        prefix = ipaddress.IPv6Network(text or "", strict=True)
    except ValueError as err:
        raise table.error("prefix", f"{text!r} is not an IPv6 network: {err}") from None
    if prefix.prefixlen != 48:
        raise table.error("prefix", f"{text!r} must be a /48 (RFC 4193), not /{prefix.prefixlen}")
    if prefix.network_address.packed[0] != 0xFD:
        raise table.error("prefix", f"{text!r} is not an RFC 4193 ULA prefix (fd00::/8)")
    return prefix


def _parse_relay(table: _Table, base: Path) -> RelaySettings:
    listen = parse_host_port(
        table.string("listen", "0.0.0.0:7400") or "", table.name("listen"), DEFAULT_RELAY_PORT
    )
    metrics_text = table.string("metrics_listen", "127.0.0.1:9400")
    metrics = None
    if metrics_text and metrics_text != "off":
        metrics = parse_host_port(metrics_text, table.name("metrics_listen"))
    policy = table.string("policy", "open") or "open"
    if policy not in ("open", "allowlist"):
        raise table.error("policy", f"{policy!r} is not 'open' or 'allowlist'")
    keys = tuple(
        parse_public_key(key, f"{table.name('allowed_keys')}[{index}]")
        for index, key in enumerate(table.string_list("allowed_keys"))
    )
    keys_file = table.path_value("allowed_keys_file", base)
    if policy == "allowlist" and not keys and keys_file is None:
        raise table.error("allowed_keys", "policy 'allowlist' needs allowed_keys or a keys file")
    settings = RelaySettings(
        listen=listen,
        metrics_listen=metrics,
        policy=policy,
        allowed_keys=keys,
        allowed_keys_file=keys_file,
        handshake_rate=table.number("handshake_rate", 20.0, 0.1, 1_000_000.0),
        handshake_burst=table.integer("handshake_burst", 40, 1, 1_000_000),
        drain_seconds=table.number("drain_seconds", 10.0, 0.0, 3600.0),
        max_links=table.integer("max_links", 10_000, 1, 1_000_000),
        forwarded_capture_file=table.path_value("forwarded_capture_file", base),
    )
    table.check_unknown()
    return settings


def _parse_relays(top: _Table, source: str) -> tuple[RelayEndpoint, ...]:
    value = top.get("relays")
    if value is None:
        raise ConfigError("relays", "at least one [[relays]] with address and public_key", source)
    if not isinstance(value, list) or not value:
        raise ConfigError("relays", "must be an array of tables: [[relays]]", source)
    endpoints = []
    for index, item in enumerate(value):
        table = _Table(item, f"relays[{index}]", source)
        address = table.string("address", required=True) or ""
        endpoint = RelayEndpoint(
            parse_host_port(address, table.name("address"), DEFAULT_RELAY_PORT),
            parse_public_key(table.get("public_key"), table.name("public_key")),
        )
        table.check_unknown()
        endpoints.append(endpoint)
    return tuple(endpoints)


def _parse_dns(table: _Table, role: str) -> DnsSettings | None:
    if not table.data:
        if role == "client":
            raise ConfigError(table.path, "table is required (servers, trust_anchor)", table.source)
        return None
    servers = tuple(
        parse_host_port(text, f"{table.name('servers')}[{index}]", 53)
        for index, text in enumerate(table.string_list("servers"))
    )
    if not servers:
        raise table.error("servers", "at least one DNS server ('HOST:PORT') is required")
    anchors_value = table.get("trust_anchor")
    anchors = [anchors_value] if isinstance(anchors_value, str) else anchors_value
    if not anchors or not isinstance(anchors, list) or not all(isinstance(a, str) for a in anchors):
        raise table.error("trust_anchor", "is required: the alt. DS or DNSKEY record(s)")
    from altmesh.client.dnssec import TrustAnchorError, parse_trust_anchors

    try:
        parse_trust_anchors(anchors)
    except TrustAnchorError as err:
        raise table.error("trust_anchor", str(err)) from None
    settings = DnsSettings(servers, tuple(anchors), table.number("timeout_seconds", 3.0, 0.1, 60))
    table.check_unknown()
    return settings


def _parse_client(table: _Table, state_dir: Path) -> ClientSettings:
    socks_text = table.string("socks_listen", "127.0.0.1:1080")
    socks = None
    if socks_text and socks_text != "off":
        socks = parse_host_port(socks_text, table.name("socks_listen"))
        if not _is_loopback(socks.host):
            # An open SOCKS proxy would let anyone on the network use this node's identity.
            raise table.error("socks_listen", f"{socks.host!r} is not a loopback address")
    forwards = tuple(
        parse_forward(text, f"{table.name('forwards')}[{index}]")
        for index, text in enumerate(table.string_list("forwards"))
    )
    control = table.path_value("control_socket", state_dir) or (state_dir / "control.sock")
    low = table.number("reconnect_min_seconds", 0.5, 0.05, 60.0)
    high = table.number("reconnect_max_seconds", 30.0, 0.1, 3600.0)
    if high < low:
        raise table.error("reconnect_max_seconds", f"must be >= reconnect_min_seconds ({low:g})")
    settings = ClientSettings(socks, forwards, control, low, high)
    table.check_unknown()
    return settings


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_service(table: _Table, role: str) -> ServiceSettings | None:
    if not table.data:
        if role == "service":
            raise ConfigError(table.path, "table is required (name, target)", table.source)
        return None
    name = table.get("name")
    parsed_name = parse_alt_name(name, table.name("name")) if name is not None else None
    target_text = table.string("target")
    target = parse_host_port(target_text, table.name("target")) if target_text else None
    if role == "service" and (parsed_name is None or target is None):
        raise table.error("name" if parsed_name is None else "target", "is required")
    ports_value = table.get("ports") or []
    if not isinstance(ports_value, list):
        raise table.error("ports", "must be a list of port numbers")
    ports = tuple(parse_port(p, f"{table.name('ports')}[{i}]") for i, p in enumerate(ports_value))
    settings = ServiceSettings(parsed_name, target, ports)
    table.check_unknown()
    return settings
