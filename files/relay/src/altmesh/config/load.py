"""Reading a node's config file: every table parsed, every rule checked, all problems at once.

`load_config` is the one validation of a config: `altmesh check-config`, `altmesh-relay --check`,
the relay's start and reload, and `altmesh up` / `altmesh serve` all call it, so a file that
passes the check passes start-up.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from altmesh.config.client_tables import (
    forward_port_problems,
    parse_client,
    parse_relays,
    parse_service,
    status_page_problems,
)
from altmesh.config.errors import ConfigError, Problem, Problems
from altmesh.config.host import check_host
from altmesh.config.model import (
    ROLES,
    ClientSettings,
    Config,
    DashboardSettings,
    Forward,
    HostPort,
    MeshSettings,
    RelayEndpoint,
    RelaySettings,
    ServiceSettings,
)
from altmesh.config.node_tables import parse_dns, parse_link, parse_log, parse_network, parse_node
from altmesh.config.relay_tables import parse_dashboard, parse_mesh, parse_relay
from altmesh.config.table import Table

# Names under which the dashboard serves pages of its own (/relays/<name>), so a relay cannot
# register with them. A test pins this to the dashboard's list.
DASHBOARD_RESERVED_NAMES = frozenset({"mesh", "tokens"})

_TOML_POSITION = re.compile(
    r"^(?P<problem>.*) \(at (?P<where>line \d+, column \d+|end of document)\)$"
)


@dataclass(frozen=True)
class CommandLine:
    """What a command's options add to the file, checked together with it.

    `role` is the node the command runs when it is not the file's role: `altmesh serve NAME --to
    HOST:PORT` runs a service with any client or service config.
    """

    role: str | None = None
    service_name: str | None = None
    service_target: HostPort | None = None
    service_ports: tuple[int, ...] = ()
    forwards: tuple[Forward, ...] = ()  # `--forward`, added to client.forwards
    socks_listen: HostPort | None = None  # `--socks`, replaces client.socks_listen
    socks: bool = True  # False: no SOCKS5 server, whatever the file says
    status_page: HostPort | None = None  # `--status-page`, replaces client.status_page


def load_config(
    path: str | Path,
    *,
    command: CommandLine | None = None,
    running: bool = True,
    installed_as: str | Path | None = None,
    roles: tuple[str, ...] = ROLES,
) -> Config:
    """Read and validate a node config file; ConfigError lists every problem found.

    `roles`: the roles the calling program can run (`altmesh-relay`: relay only).
    `running`: also check what start-up needs (role requirements, key files, directories,
    addresses of this host); False for commands that only read the file (`altmesh status`).
    `installed_as`: check the file as if it were at that path (relative paths resolve against
    its directory, and messages name it), for checking a copy before installing it.
    """
    path = Path(path)
    shown = Path(installed_as) if installed_as is not None else path
    source = str(shown)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError("(file)", f"cannot read: {err.strerror}", source) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("(file)", "is not UTF-8 text", source) from None
    except tomllib.TOMLDecodeError as err:
        match = _TOML_POSITION.match(str(err))
        if match is None:
            raise ConfigError("(file)", f"is not valid TOML: {err}", source) from None
        problem = match["problem"][:1].lower() + match["problem"][1:]
        raise ConfigError(match["where"], f"is not valid TOML: {problem}", source) from None
    return parse_config(data, shown, command=command, running=running, roles=roles)


def parse_config(
    data: dict[str, Any],
    path: Path,
    *,
    command: CommandLine | None = None,
    running: bool = True,
    roles: tuple[str, ...] = ROLES,
) -> Config:
    """Validate the parsed TOML of the file at `path` (relative paths resolve against its dir)."""
    problems = Problems(str(path))
    base = path.parent.resolve()
    top = Table(data, "", problems, base)
    role = top.string("role", required=True)
    if role is not None and role not in ROLES:
        top.problem("role", f"{role!r} is not one of {', '.join(ROLES)}")
        role = None
    elif role is not None and role not in roles:
        top.problem("role", f"is {role!r}; this program runs {' or '.join(map(repr, roles))}")

    network_table = _required_table(top, "network", "name, prefix")
    network = parse_network(network_table) if network_table else None
    node_table = _required_table(top, "node", "private_key_file, state_dir")
    node = parse_node(node_table) if node_table else None
    link = parse_link(top.table("link"))
    log = parse_log(top.table("log"))
    dns_table = top.table("dns")
    dns = parse_dns(dns_table) if dns_table else None

    relay: RelaySettings | None = None
    mesh: MeshSettings | None = None
    dashboard: DashboardSettings | None = None
    relays: tuple[RelayEndpoint, ...] = ()
    client: ClientSettings | None = None
    service: ServiceSettings | None = None
    if role == "relay":
        relay_table = _required_table(top, "relay", "listen, policy, ...")
        relay = parse_relay(relay_table) if relay_table else None
        mesh_table = top.table("mesh")
        if mesh_table is not None:
            mesh = parse_mesh(mesh_table, dns, dns_given=dns_table is not None)
        dashboard_table = top.table("dashboard")
        if dashboard_table is not None:
            dashboard = parse_dashboard(dashboard_table)
        if relay is not None:
            _relay_identity(
                relay,
                name_given=bool(relay_table and relay_table.has("name")),
                has_mesh=mesh_table is not None,
                has_dashboard=dashboard_table is not None,
                problems=problems,
            )
            if mesh is not None and relay.name is not None:
                for index, peer in enumerate(mesh.peers):
                    if peer.name == relay.name:
                        problems.add(f"mesh.peers[{index}].name", "is this relay's own name")
    elif role in ("client", "service"):
        relays = parse_relays(top)
        client = parse_client(top.table("client"), node.state_dir if node else None)
        service_table = top.table("service")
        service = parse_service(service_table) if service_table else None
        client, service = _apply_command(client, service, command)
        _client_rules(role, client, service, dns_table is not None, command, running, problems)
    if role is not None:  # with no valid role, which tables belong in the file is unknown
        top.check_unknown()

    if running:
        check_host(
            problems,
            node=node,
            log=log,
            relay=relay,
            mesh=mesh,
            dashboard=dashboard,
            client=client,
            service=service,
        )
    config: Config | None = None
    if role is not None and network is not None and node is not None:
        config = Config(
            source=path,
            role=(command.role if command and command.role else role),
            network=network,
            node=node,
            link=link,
            log=log,
            relay=relay,
            relays=relays,
            dns=dns,
            client=client,
            service=service,
            mesh=mesh,
            dashboard=dashboard,
        )
    problems.raise_if_any()
    assert config is not None
    return config


def _required_table(top: Table, key: str, holds: str) -> Table | None:
    table = top.table(key)
    if table is None and not top.has(key):
        top.problem(key, f"table is required ([{key}] with {holds})")
    return table


def _relay_identity(
    relay: RelaySettings,
    *,
    name_given: bool,
    has_mesh: bool,
    has_dashboard: bool,
    problems: Problems,
) -> None:
    """[mesh] and [dashboard] need to say who this relay is and where it is reached."""
    needed_by = " and ".join(
        table
        for table, present in (("[mesh]", has_mesh), ("[dashboard]", has_dashboard))
        if present
    )
    if not needed_by:
        return
    if relay.name is None and not name_given:  # a name given but invalid is reported already
        problems.add("relay.name", f"is required with {needed_by} (one DNS label, like 'relay1')")
    elif has_dashboard and relay.name in DASHBOARD_RESERVED_NAMES:
        problems.add("relay.name", f"{relay.name!r} is reserved by the dashboard; choose another")
    if not relay.advertise:
        problems.add(
            "relay.advertise",
            f"is required with {needed_by} when relay.listen is {relay.listen.host} (every "
            "address): give the HOST:PORT peers and clients reach this relay on",
        )


def _apply_command(
    client: ClientSettings, service: ServiceSettings | None, command: CommandLine | None
) -> tuple[ClientSettings, ServiceSettings | None]:
    if command is None:
        return client, service
    forwards = client.forwards + command.forwards
    socks = command.socks_listen or client.socks_listen
    client = replace(
        client,
        forwards=forwards,
        socks_listen=socks if command.socks else None,
        status_page=command.status_page or client.status_page,
    )
    if command.service_name or command.service_target or command.service_ports:
        base = service or ServiceSettings(None, None, ())
        service = replace(
            base,
            name=command.service_name or base.name,
            target=command.service_target or base.target,
            ports=command.service_ports or base.ports,
        )
    return client, service


def _client_rules(
    role: str,
    client: ClientSettings,
    service: ServiceSettings | None,
    dns_given: bool,
    command: CommandLine | None,
    running: bool,
    problems: Problems,
) -> None:
    runs = command.role if command and command.role else role
    if running and runs == "client" and not dns_given:
        problems.add(
            "dns", "table is required: a client resolves .alt names (servers, trust_anchor)"
        )
    if running and runs == "service":
        hint = " (or give NAME and --to to altmesh serve)"
        if service is None or service.name is None:
            problems.add("service.name", f"is required to run a service{hint}")
        if service is None or service.target is None:
            problems.add("service.target", f"is required to run a service{hint}")
    file_forwards = len(client.forwards) - (len(command.forwards) if command else 0)
    labelled = [
        (f"client.forwards[{index}]" if index < file_forwards else f"--forward {forward}", forward)
        for index, forward in enumerate(client.forwards)
    ]
    for where, problem in forward_port_problems(labelled, client.socks_listen):
        if where.startswith("--"):
            problems.extend([Problem("", where, problem)])  # a command-line option, not the file
        else:
            problems.add(where, problem)
    page_given = command is not None and command.status_page is not None
    for problem in status_page_problems(client):
        if page_given:
            problems.extend([Problem("", "--status-page", problem)])
        else:
            problems.add("client.status_page", problem)
