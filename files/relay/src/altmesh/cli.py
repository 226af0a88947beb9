"""`altmesh`: keygen, check-config, up, serve, status, resolve."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

from altmesh.config import (
    Config,
    ConfigError,
    ServiceSettings,
    load_config,
    parse_alt_name,
    parse_forward,
    parse_host_port,
)
from altmesh.keyfile import KeyFileError, encode_public_key, generate_key_file, public_key_path

DEFAULT_CONFIG = os.environ.get("ALTMESH_CONFIG", "/etc/altmesh/client.toml")


def _fail(message: str, code: int = 2) -> int:
    print(f"altmesh: {message}", file=sys.stderr)
    return code


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
        config = load_config(args.file)
    except ConfigError as err:
        print(f"altmesh check-config: {err}", file=sys.stderr)
        return 1
    print(f"{args.file}: OK ({config.role})")
    return 0


def _load(args: argparse.Namespace, roles: tuple[str, ...]) -> Config:
    config = load_config(args.config)
    if config.role not in roles:
        raise ConfigError("role", f"is {config.role!r}; this command needs {' or '.join(roles)}")
    return config


def _setup_logging(config: Config, verbose: bool) -> None:
    level = "DEBUG" if verbose else config.log.level.upper()
    logging.basicConfig(
        level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )


def _run_node(config: Config, **kwargs: object) -> int:
    from altmesh.client.node import ClientNode
    from altmesh.net.loop import run

    async def start() -> int:
        node = ClientNode(config, **kwargs)  # type: ignore[arg-type]
        return await node.run()

    try:
        return run(start())
    except KeyFileError as err:
        return _fail(str(err))
    except OSError as err:
        return _fail(f"cannot start: {err}", 1)


def cmd_up(args: argparse.Namespace) -> int:
    try:
        config = _load(args, ("client", "service"))
        assert config.client is not None
        forwards = config.client.forwards + tuple(
            parse_forward(text, "--forward") for text in args.forward
        )
        socks = parse_host_port(args.socks, "--socks") if args.socks else None
        if socks is not None and socks.host not in ("127.0.0.1", "::1", "localhost"):
            raise ConfigError("--socks", f"{socks.host!r} is not a loopback address")
    except ConfigError as err:
        return _fail(f"config error: {err}")
    _setup_logging(config, args.verbose)
    return _run_node(
        config,
        forwards=forwards,
        socks_listen=socks,
        enable_socks=not args.no_socks,
        service=config.service if config.role == "service" else None,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        config = _load(args, ("client", "service"))
        base = config.service or ServiceSettings(None, None, ())
        name = parse_alt_name(args.name, "NAME") if args.name else base.name
        target = parse_host_port(args.to, "--to") if args.to else base.target
        if name is None:
            raise ConfigError("NAME", "give the service's name (or service.name in the config)")
        if target is None:
            raise ConfigError("--to", "give HOST:PORT of the local service (or service.target)")
        ports = tuple(args.port) if args.port else base.ports
        service = replace(base, name=name, target=target, ports=ports)
        assert config.client is not None
        forwards = config.client.forwards + tuple(
            parse_forward(text, "--forward") for text in args.forward
        )
    except ConfigError as err:
        return _fail(f"config error: {err}")
    _setup_logging(config, args.verbose)
    return _run_node(config, service=service, forwards=forwards, enable_socks=args.socks)


def cmd_status(args: argparse.Namespace) -> int:
    from altmesh.client.node import control_status

    if args.socket:
        path = Path(args.socket)
    else:
        try:
            config = _load(args, ("client", "service"))
        except ConfigError as err:
            return _fail(f"config error: {err}")
        assert config.client is not None
        path = config.client.control_socket
    try:
        status = control_status(path)
    except (OSError, ValueError) as err:
        return _fail(f"no running altmesh at {path}: {err}", 1)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    rtt = f"{status['rtt_ms']:.2f} ms" if status.get("rtt_ms") is not None else "-"
    lines = [
        f"role:       {status['role']}",
        f"address:    {status['address']}",
        f"link:       {status['link_state']}",
        f"relay:      {status['relay'] or '-'}",
        f"rtt:        {rtt}",
        f"streams:    {status['streams_open']} open, {status['streams_total']} total",
        f"bytes:      {status['bytes_in']} in, {status['bytes_out']} out",
        f"reconnects: {status['reconnects']}",
    ]
    if status.get("socks"):
        lines.append(f"socks5:     {status['socks']}")
    for forward in status.get("forwards", []):
        lines.append(f"forward:    {forward}")
    if status.get("service"):
        lines.append(f"service:    {status['service']}")
    print("\n".join(lines))
    return 0


def cmd_resolve(args: argparse.Namespace) -> int:
    import asyncio

    from altmesh.client.dnssec import AltResolver, ResolveError, parse_trust_anchors

    try:
        config = _load(args, ("client", "service"))
        if config.dns is None:
            raise ConfigError("dns", "is required to resolve names")
        name = parse_alt_name(args.name, "NAME")
    except ConfigError as err:
        return _fail(f"config error: {err}")
    resolver = AltResolver(
        config.dns.servers,
        parse_trust_anchors(config.dns.trust_anchors),
        config.network.prefix,
        config.dns.timeout_seconds,
    )
    try:
        result = asyncio.run(resolver.resolve(name))
    except ResolveError as err:
        return _fail(f"cannot resolve {err} ({err.kind})", 1)
    print(f"{result.name} {result.address} {result.public_key_b64} (DNSSEC validated)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="altmesh", description="altmesh client and tools")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("keygen", help="make a static key pair (private key file mode 600)")
    p.add_argument("--out", "-o", default="altmesh.key", help="private key file to write")
    p.add_argument("--force", action="store_true", help="replace an existing key file")
    p.add_argument("--prefix", help="network /48 prefix: also print the node's address")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("check-config", help="validate a node config file; non-zero if bad")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_config)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", "-c", default=DEFAULT_CONFIG, help="node config file")
        p.add_argument("--verbose", "-v", action="store_true")

    p = sub.add_parser("up", help="join the network: link to a relay, SOCKS5, forwards")
    common(p)
    p.add_argument("--forward", "-L", action="append", default=[], metavar="LOCAL_PORT:NAME:PORT")
    p.add_argument("--socks", metavar="HOST:PORT", help="SOCKS5 listen address (loopback)")
    p.add_argument("--no-socks", action="store_true", help="run no SOCKS5 server")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("serve", help="publish a local TCP service under a .alt name")
    common(p)
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("--to", metavar="HOST:PORT", help="the local service")
    p.add_argument("--port", type=int, action="append", help="only accept this port (repeat)")
    p.add_argument("--forward", "-L", action="append", default=[])
    p.add_argument("--socks", action="store_true", help="also run the SOCKS5 server")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("status", help="link state, relay, RTT, streams, bytes")
    common(p)
    p.add_argument("--socket", help="control socket of the running node")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("resolve", help="resolve a .alt name (DNSSEC-validated address and key)")
    common(p)
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_resolve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
