"""`altmesh-relay --config FILE`: run the relay daemon."""

from __future__ import annotations

import argparse
import logging
import sys

from altmesh.config import ConfigError, load_config
from altmesh.keyfile import KeyFileError
from altmesh.state import StateSchemaError


def _problems(error: ConfigError) -> int:
    """Every problem on stderr, one `FILE: field: problem` line each; exit status 1."""
    for line in error.lines():
        print(line, file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="altmesh-relay", description=__doc__)
    parser.add_argument("--config", "-c", default="/etc/altmesh/relay.toml", help="config file")
    parser.add_argument(
        "--check", action="store_true", help="run every start-up check on the config and exit"
    )
    args = parser.parse_args(argv)
    try:
        # The same validation as `altmesh check-config`: everything start-up needs is checked
        # here, before anything starts, so a bad file is a list of messages, not a traceback.
        config = load_config(args.config, roles=("relay",))
    except ConfigError as err:
        return _problems(err)
    if args.check:
        print(f"{args.config}: OK (relay)")
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
    except ConfigError as err:
        return _problems(err)
    except (KeyFileError, StateSchemaError) as err:
        print(f"altmesh-relay: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"altmesh-relay: cannot start: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
