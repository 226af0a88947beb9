"""A TCP proxy that writes every byte it carries (both directions) to a capture file.

Placed between a service and the relay, the capture holds exactly what the relay forwards.
Run: python recording_proxy.py LISTEN_PORT TARGET_PORT CAPTURE_FILE  (prints "ready").
"""

from __future__ import annotations

import asyncio
import sys
from typing import BinaryIO


async def pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, capture: BinaryIO
) -> None:
    try:
        while data := await reader.read(65536):
            capture.write(data)
            capture.flush()
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        capture.flush()
        writer.close()


async def main(listen: int, target: int, path: str) -> None:
    capture = open(path, "ab")  # noqa: SIM115 - lives as long as the process

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pump(reader, up_writer, capture), pump(up_reader, writer, capture))

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
