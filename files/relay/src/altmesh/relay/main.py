"""`altmesh-relay --config FILE`: run the relay daemon."""

from __future__ import annotations

import argparse
import logging
import sys

from altmesh.config import ConfigError, load_config
from altmesh.keyfile import KeyFileError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="altmesh-relay", description=__doc__)
    parser.add_argument("--config", "-c", default="/etc/altmesh/relay.toml", help="config file")
    parser.add_argument("--check", action="store_true", help="validate the config file and exit")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if config.role != "relay":
            raise ConfigError(
                "role", f"is {config.role!r}; altmesh-relay needs 'relay'", args.config
            )
    except ConfigError as err:
        print(f"altmesh-relay: config error: {err}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: OK")
        return 0
    logging.basicConfig(
        level=config.log.level.upper(),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    from altmesh.net.loop import run
    from altmesh.relay.server import Relay

    async def start() -> int:
        relay = Relay(config)
        return await relay.run()

    try:
        return run(start())
    except (ConfigError, KeyFileError) as err:
        print(f"altmesh-relay: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"altmesh-relay: cannot start: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
