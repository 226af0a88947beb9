"""Thin asyncio adapters between sockets and the sans-IO protocol core (`altmesh.protocol`)."""
