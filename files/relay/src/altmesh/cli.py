"""`altmesh`: keygen, check-config, up, serve, withdraw, status, resolve."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from altmesh.config import (
    CommandLine,
    Config,
    ConfigError,
    Forward,
    HostPort,
    Problem,
    load_config,
    parse_alt_name,
    parse_forward,
    parse_host_port,
    parse_port,
    parse_socks_listen,
    parse_status_page,
)
from altmesh.keyfile import KeyFileError, encode_public_key, generate_key_file, public_key_path

DEFAULT_CONFIG = os.environ.get("ALTMESH_CONFIG", "/etc/altmesh/client.toml")
NODE_ROLES = ("client", "service")
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # what a shell reports for a program killed by SIGPIPE


def _fail(message: str, code: int = 1) -> int:
    print(f"altmesh: {message}", file=sys.stderr)
    return code


def _config_problems(error: ConfigError) -> int:
    """Print every problem, one `FILE: field: problem` line each; exit status 1."""
    for line in error.lines():
        print(line, file=sys.stderr)
    return 1


def cmd_keygen(args: argparse.Namespace) -> int:
    path = Path(args.out)
    try:
        public = generate_key_file(path, force=args.force)
    except KeyFileError as err:
        return _fail(str(err))
    except OSError as err:
        return _fail(f"cannot write {path}: {err.strerror}")
    encoded = encode_public_key(public)
    print(encoded)
    print(f"private key: {path} (mode 600); public key: {public_key_path(path)}", file=sys.stderr)
    if args.prefix:
        from altmesh.protocol import network_prefix, node_address

        try:
            prefix = network_prefix(args.prefix)
        except ValueError as err:
            return _fail(f"--prefix: {err}")
        print(f"address: {node_address(prefix, public)}", file=sys.stderr)
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file, installed_as=args.installed_as)
    except ConfigError as err:
        return _config_problems(err)
    print(f"{args.installed_as or args.file}: OK ({config.role})")
    return 0


def _setup_logging(config: Config, verbose: bool) -> None:
    level = "DEBUG" if verbose else config.log.level.upper()
    logging.basicConfig(
        level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )


def _run_node(config: Config) -> int:
    from altmesh.client.node import ClientNode
    from altmesh.net.loop import run

    client = config.client
    assert client is not None
    socks = client.socks_listen

    publisher = None
    if config.role == "service":
        from altmesh.client.publish import ServicePublisher, publishes

        if publishes(config):
            try:
                publisher = ServicePublisher(config)
            except KeyFileError as err:
                return _fail(str(err))

    async def start() -> int:
        if publisher is not None:
            publisher.start()  # its own thread: the loop never waits for the dashboard
        node = ClientNode(
            config,
            service=config.service if config.role == "service" else None,
            forwards=client.forwards,
            socks_listen=socks,
            enable_socks=socks is not None,
        )
        return await node.run()

    try:
        return run(start())
    except (ConfigError, KeyFileError) as err:
        return _fail(str(err))
    except OSError as err:
        return _fail(f"cannot start: {err}")
    finally:
        if publisher is not None:
            publisher.stop()


def _options(args: argparse.Namespace, problems: list[Problem]) -> tuple[Forward, ...]:
    """The --forward options (bad ones recorded in `problems`)."""
    forwards = []
    for text in args.forward:
        try:
            forwards.append(parse_forward(text, f"--forward {text}"))
        except ConfigError as err:
            problems.extend(err.problems)
    return tuple(forwards)


def _status_page(args: argparse.Namespace, problems: list[Problem]) -> HostPort | None:
    """The --status-page option (a bad one recorded in `problems`)."""
    if not args.status_page:
        return None
    try:
        return parse_status_page(args.status_page, "--status-page")
    except ConfigError as err:
        problems.extend(err.problems)
        return None


def _load_node(args: argparse.Namespace, command: CommandLine, problems: list[Problem]) -> Config:
    """The node config with the command's options, or ConfigError listing every problem."""
    try:
        config = load_config(args.config, command=command, roles=NODE_ROLES)
    except ConfigError as err:
        raise ConfigError.of([*problems, *err.problems]) from None
    if problems:
        raise ConfigError.of(problems)
    return config


def cmd_up(args: argparse.Namespace) -> int:
    problems: list[Problem] = []
    forwards = _options(args, problems)
    socks: HostPort | None = None
    if args.socks:
        try:
            socks = parse_socks_listen(args.socks, "--socks")
        except ConfigError as err:
            problems.extend(err.problems)
    command = CommandLine(
        forwards=forwards,
        socks_listen=socks,
        socks=not args.no_socks,
        status_page=_status_page(args, problems),
    )
    try:
        config = _load_node(args, command, problems)
    except ConfigError as err:
        return _config_problems(err)
    _setup_logging(config, args.verbose)
    return _run_node(config)


def cmd_serve(args: argparse.Namespace) -> int:
    problems: list[Problem] = []
    forwards = _options(args, problems)
    name = target = None
    try:
        name = parse_alt_name(args.name, "NAME") if args.name else None
    except ConfigError as err:
        problems.extend(err.problems)
    try:
        target = parse_host_port(args.to, "--to") if args.to else None
    except ConfigError as err:
        problems.extend(err.problems)
    ports = []
    for port in args.port or ():
        try:
            ports.append(parse_port(port, "--port"))
        except ConfigError as err:
            problems.extend(err.problems)
    command = CommandLine(
        role="service",
        service_name=name,
        service_target=target,
        service_ports=tuple(ports),
        forwards=forwards,
        socks=args.socks,
        status_page=_status_page(args, problems),
    )
    try:
        config = _load_node(args, command, problems)
    except ConfigError as err:
        return _config_problems(err)
    _setup_logging(config, args.verbose)
    return _run_node(config)


def cmd_withdraw(args: argparse.Namespace) -> int:
    from altmesh.client.publish import withdraw
    from altmesh.dashboard_client import DashboardError

    try:
        config = load_config(args.config, running=False, roles=NODE_ROLES)
    except ConfigError as err:
        return _config_problems(err)
    service = config.service
    if service is None or service.name is None:
        return _fail(f"{args.config}: service.name: is required to withdraw a service")
    if service.dashboard_url is None or service.token_file is None:
        return _fail(
            f"{args.config}: service.dashboard_url: is required to withdraw a service "
            "(with service.token_file)"
        )
    try:
        answer = withdraw(config)
    except KeyFileError as err:
        return _fail(f"{args.config}: service.token_file: {err}")
    except DashboardError as err:
        return _fail(f"withdrawing {service.name} failed ({err.kind}): {err}")
    changed = "removed" if answer.get("changed") else "was not published"
    print(f"{service.name}: {changed} (DNS {answer.get('dns', '?')})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from altmesh.client.node import control_status

    if args.socket:
        path = Path(args.socket)
    else:
        try:
            config = load_config(args.config, running=False, roles=NODE_ROLES)
        except ConfigError as err:
            return _config_problems(err)
        assert config.client is not None
        path = config.client.control_socket
    try:
        status = control_status(path)
    except (OSError, ValueError) as err:
        return _fail(f"no running altmesh at {path}: {err}")
    if args.page_url:
        if not status.get("status_page_login"):
            return _fail("the status page is off (client.status_page, or --status-page)")
        print(status["status_page_login"])
        return 0
    status.pop("status_page_login", None)  # the page's token: only with --page-url
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print("\n".join(status_lines(status)))
    return 0


def status_lines(status: dict[str, Any]) -> list[str]:
    """`altmesh status` as text: the link, the relay and why it was chosen, the candidates."""
    from altmesh.client.humanize import human_bytes, human_duration

    def ms(value: float | None) -> str:
        return f"{value:.2f} ms" if value is not None else "-"

    relay = status.get("relay")
    if relay and status.get("relay_name") and status["relay_name"] != relay:
        relay = f"{status['relay_name']} ({relay})"
    lines = [
        f"role:       {status['role']}",
        f"address:    {status['address']}",
        f"link:       {status['link_state']}",
        f"relay:      {relay or '-'}",
        f"rtt:        {ms(status.get('rtt_ms'))}",
    ]
    if status.get("chosen_because"):
        lines.append(f"chosen:     {status['chosen_because']}")
    if status.get("connected_since") and status["link_state"] == "established":
        since = human_duration(time.time() - status["connected_since"])
        lines.append(f"connected:  {since} ago")
    lines += [
        f"streams:    {status['streams_open']} open, {status['streams_total']} total",
        f"bytes:      {human_bytes(status['bytes_in'])} in, {human_bytes(status['bytes_out'])} out",
        f"reconnects: {status['reconnects']}",
    ]
    if status.get("socks"):
        lines.append(f"socks5:     {status['socks']}")
    for forward in status.get("forwards", []):
        lines.append(f"forward:    {forward}")
    if status.get("service"):
        lines.append(f"service:    {status['service']}")
    if status.get("status_page"):
        lines.append(f"page:       {status['status_page']} (with its token: --page-url)")
    discovery = status.get("discovery") or {}
    if discovery.get("enabled"):
        found = (
            f"error: {discovery['error']}"
            if discovery.get("error")
            else (f"{discovery.get('relays', 0)} relays in DNS")
        )
        lines.append(f"discovery:  {found}")
    candidates = status.get("candidates") or []
    if candidates:
        lines.append("candidates: (* current; RTT smoothed; score = RTT x SRV weight factor)")
        width = max(len(c["name"]) for c in candidates)
        for c in candidates:
            srv = f"prio {c['priority']} weight {c['weight']}" if c["priority"] is not None else "-"
            lines.append(
                f"  {'*' if c['current'] else ' '} {c['name']:<{width}}  {c['source']:<10} "
                f"{srv:<20} rtt {ms(c['rtt_ms']):>10}  score {ms(c['score_ms']):>10}  {c['state']}"
            )
    return lines


def cmd_resolve(args: argparse.Namespace) -> int:
    import asyncio

    from altmesh.client.dnssec import AltResolver, ResolveError, parse_trust_anchors

    try:
        config = load_config(args.config, running=False, roles=NODE_ROLES)
        if config.dns is None:
            raise ConfigError("dns", "table is required to resolve names", str(config.source))
        name = parse_alt_name(args.name, "NAME")
    except ConfigError as err:
        return _config_problems(err)
    resolver = AltResolver(
        config.dns.servers,
        parse_trust_anchors(config.dns.trust_anchors),
        config.network.prefix,
        config.dns.timeout_seconds,
    )
    try:
        result = asyncio.run(resolver.resolve(name))
    except ResolveError as err:
        return _fail(f"cannot resolve {err} ({err.kind})")
    print(f"{result.name} {result.address} {result.public_key_b64} (DNSSEC validated)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="altmesh", description="altmesh client and tools")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("keygen", help="make a static key pair (private key file mode 600)")
    p.add_argument(
        "--out",
        "-o",
        required=True,
        metavar="FILE",
        help="private key file to write (mode 600; the public key goes to FILE.pub)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing key file")
    p.add_argument("--prefix", help="network /48 prefix: also print the node's address")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser(
        "check-config", help="run every start-up check on a node config file; exit 1 if bad"
    )
    p.add_argument("file")
    p.add_argument(
        "--as",
        dest="installed_as",
        metavar="PATH",
        help="check FILE as if it were installed at PATH (relative paths resolve against "
        "PATH's directory; messages name PATH), e.g. for Ansible's validate: on a temporary copy",
    )
    p.set_defaults(func=cmd_check_config)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", "-c", default=DEFAULT_CONFIG, help="node config file")
        p.add_argument("--verbose", "-v", action="store_true")

    def status_page(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--status-page",
            metavar="HOST:PORT",
            help="serve the local status page on this loopback address (replaces "
            "client.status_page; `altmesh status` prints its address with the token)",
        )

    p = sub.add_parser("up", help="join the network: link to a relay, SOCKS5, forwards")
    common(p)
    p.add_argument("--forward", "-L", action="append", default=[], metavar="LOCAL_PORT:NAME:PORT")
    p.add_argument("--socks", metavar="HOST:PORT", help="SOCKS5 listen address (loopback)")
    p.add_argument("--no-socks", action="store_true", help="run no SOCKS5 server")
    status_page(p)
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("serve", help="publish a local TCP service under a .alt name")
    common(p)
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("--to", metavar="HOST:PORT", help="the local service")
    p.add_argument("--port", type=int, action="append", help="only accept this port (repeat)")
    p.add_argument("--forward", "-L", action="append", default=[])
    p.add_argument("--socks", action="store_true", help="also run the SOCKS5 server")
    status_page(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "withdraw", help="remove the service's DNS records through the dashboard ([service])"
    )
    p.add_argument("--config", "-c", default=DEFAULT_CONFIG, help="node config file")
    p.set_defaults(func=cmd_withdraw)

    p = sub.add_parser(
        "status", help="link state, relay and why it was chosen, candidates, streams, bytes"
    )
    common(p)
    p.add_argument("--socket", help="control socket of the running node")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--page-url",
        action="store_true",
        help="print only the status page's address with its token (open it in a browser)",
    )
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("resolve", help="resolve a .alt name (DNSSEC-validated address and key)")
    common(p)
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_resolve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader of our output went away (`altmesh status | head -1`): stop quietly, as a
        # program killed by SIGPIPE would. Later writes (at exit) go to /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return code


if __name__ == "__main__":
    sys.exit(main())
