"""One TOML config file per node (relay, client, service), validated into typed dataclasses.

Every problem is reported as `FILE: field: problem` (the field is the dotted key as written in
the file), all of them at once, in one `ConfigError`; `altmesh check-config FILE` prints them and
exits 1. `load_config` runs every check start-up runs (see `altmesh.config.load`).

- `model`: the dataclasses; `values`: parsers of single values, shared with the CLI;
- `table`: reading a TOML table; `node_tables`, `relay_tables`, `client_tables`: one parser per
  table of the file; `host`: checks against the host (files, modes, addresses);
- `load`: the whole file, the rules between tables, and `load_config`.
"""

from altmesh.config.errors import ConfigError, Problem
from altmesh.config.host import read_allowed_keys
from altmesh.config.load import DASHBOARD_RESERVED_NAMES, CommandLine, load_config, parse_config
from altmesh.config.model import (
    ROLES,
    ClientSettings,
    Config,
    DashboardSettings,
    DnsSettings,
    Forward,
    HostPort,
    LinkTuning,
    LogConfig,
    MeshPeer,
    MeshSettings,
    NetworkConfig,
    NodeConfig,
    RelayEndpoint,
    RelaySettings,
    ServiceSettings,
)
from altmesh.config.values import (
    DEFAULT_RELAY_PORT,
    parse_alt_name,
    parse_forward,
    parse_host_port,
    parse_listen,
    parse_port,
    parse_public_key,
    parse_relay_name,
    parse_socks_listen,
    parse_status_page,
)

__all__ = [
    "DASHBOARD_RESERVED_NAMES",
    "DEFAULT_RELAY_PORT",
    "ROLES",
    "ClientSettings",
    "CommandLine",
    "Config",
    "ConfigError",
    "DashboardSettings",
    "DnsSettings",
    "Forward",
    "HostPort",
    "LinkTuning",
    "LogConfig",
    "MeshPeer",
    "MeshSettings",
    "NetworkConfig",
    "NodeConfig",
    "Problem",
    "RelayEndpoint",
    "RelaySettings",
    "ServiceSettings",
    "load_config",
    "parse_alt_name",
    "parse_config",
    "parse_forward",
    "parse_host_port",
    "parse_listen",
    "parse_port",
    "parse_public_key",
    "parse_relay_name",
    "parse_socks_listen",
    "parse_status_page",
    "read_allowed_keys",
]
