"""A DNS server on loopback standing between a resolver and a real named: an on-path attacker.

Every query (UDP or TCP) goes to `answer(query)`, which returns the wire messages to send back
in order (UDP: each as one datagram; TCP: the last one). `forward(query)` asks the real named.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from types import TracebackType

import dns.exception
import dns.message
import dns.query

Answer = Callable[[dns.message.Message], list[bytes]]


class DnsProxy:
    def __init__(self, upstream: tuple[str, int], answer: Answer | None = None) -> None:
        self.upstream = upstream
        self.answer = answer or (lambda query: [self.forward(query).to_wire()])
        self.queries: list[dns.message.Message] = []
        self.udp, self.tcp = _bind_pair()
        self.address = "127.0.0.1"
        self.port = int(self.udp.getsockname()[1])
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._serve_udp, daemon=True),
            threading.Thread(target=self._serve_tcp, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def forward(self, query: dns.message.Message) -> dns.message.Message:
        """The real named's answer to `query`."""
        return dns.query.udp(query, self.upstream[0], port=self.upstream[1], timeout=2)

    def _serve_udp(self) -> None:
        while not self._stopping.is_set():
            try:
                wire, client = self.udp.recvfrom(65535)
            except OSError:
                return
            if self._stopping.is_set():
                return  # woken by stop()
            try:
                query = dns.message.from_wire(wire)
            except dns.exception.DNSException:
                continue
            self.queries.append(query)
            for datagram in self.answer(query):
                with contextlib.suppress(OSError):
                    self.udp.sendto(datagram, client)

    def _serve_tcp(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self.tcp.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(5)
                try:
                    length = struct.unpack("!H", _read(connection, 2))[0]
                    query = dns.message.from_wire(_read(connection, length))
                    self.queries.append(query)
                    reply = self.answer(query)[-1]
                    connection.sendall(struct.pack("!H", len(reply)) + reply)
                except (OSError, EOFError, dns.exception.DNSException):
                    continue

    def stop(self) -> None:
        self._stopping.set()
        for sock in (self.udp, self.tcp):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> DnsProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _read(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return data


def _bind_pair() -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same free loopback port."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(8)
        return udp, tcp
    raise RuntimeError("no loopback port free for both UDP and TCP")
