"""Test peer behind a service: `ECHO\\n` echoes; `SOURCE <bytes> <seed>\\n` sends a known stream.

The source stream is `source_block(seed, i)` for i = 0, 1, ...: 1 MiB blocks, each starting
with its 8-byte index, so a lost, repeated or reordered block changes the sha256.
Run: python data_server.py PORT  (prints "ready" once listening).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import sys

BLOCK = 1 << 20


def base_block(seed: int) -> bytes:
    return random.Random(seed).randbytes(BLOCK)


def source_block(base: bytes, index: int) -> bytes:
    return index.to_bytes(8, "big") + base[8:]


def source_sha256(total: int, seed: int) -> str:
    base = base_block(seed)
    digest = hashlib.sha256()
    index = 0
    remaining = total
    while remaining > 0:
        block = source_block(base, index)[:remaining]
        digest.update(block)
        remaining -= len(block)
        index += 1
    return digest.hexdigest()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        line = (await reader.readline()).decode().split()
        if line and line[0] == "ECHO":
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        elif len(line) == 3 and line[0] == "SOURCE":
            total, seed = int(line[1]), int(line[2])
            base = base_block(seed)
            index = 0
            while total > 0:
                block = source_block(base, index)[:total]
                writer.write(block)
                await writer.drain()
                total -= len(block)
                index += 1
        if writer.can_write_eof():
            writer.write_eof()
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
