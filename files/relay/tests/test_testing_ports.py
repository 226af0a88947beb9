"""altmesh.testing.ports: test ports come from below the kernel's ephemeral range, bindable,
never handed out twice by one process."""

from __future__ import annotations

import socket

import pytest
from altmesh.testing import ports


def test_ports_are_below_the_ephemeral_range_and_never_repeat() -> None:
    start = ports.ephemeral_start()
    chosen = [ports.free_port() for _ in range(300)]
    assert len(set(chosen)) == len(chosen)
    assert all(10000 <= port < start for port in chosen)


def test_a_chosen_port_can_be_bound_for_tcp_and_udp_when_asked() -> None:
    port = ports.free_port(udp_too=True)
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
    ):
        tcp.bind((ports.LOOPBACK, port))
        udp.bind((ports.LOOPBACK, port))


def test_a_port_held_by_another_socket_is_not_free() -> None:
    port = ports.free_port()
    with socket.socket() as holder:
        holder.bind((ports.LOOPBACK, port))
        holder.listen()
        assert not ports.port_is_free(port)
    assert ports.port_is_free(port)


def test_ports_in_avoid_are_never_chosen() -> None:
    start = ports.ephemeral_start()
    avoid = frozenset(range(10000, start - 3000))
    chosen = {ports.free_port(avoid=avoid) for _ in range(5)}
    assert chosen.isdisjoint(avoid)


def test_no_room_below_the_ephemeral_range_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ports, "ephemeral_start", lambda: 10000)
    with pytest.raises(ports.NoFreePortError, match="starts at 10000"):
        ports.free_port()
