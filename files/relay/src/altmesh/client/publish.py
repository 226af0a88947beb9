"""A service publishes itself through the dashboard (docs/client-config.md, `[service]`).

With `[service] dashboard_url` and `token_file` (a service token the dashboard made for this
name), `altmesh serve` registers the service at start: `POST /api/v1/services/register` with its
name, its public key and its address (`node_address(prefix, key)`), and the dashboard publishes
the AAAA record and the key TXT record by a signed dynamic update. The registration runs in a
thread of its own with its own HTTP client, so a dashboard that is down or hangs never holds up
the node's event loop: while the dashboard cannot be reached (or answers 5xx), the request is
repeated after an exponential backoff with full jitter (RETRY_MIN_SECONDS doubling up to
RETRY_MAX_SECONDS). An answer that retrying cannot change (the token is refused, the name is
not the token's, a conflict) is logged as an error and not repeated.

Registration is idempotent, so a restarted service registers again without changing the zone.
Stopping the service does not unpublish it (a restart should not make the name vanish);
`altmesh withdraw` removes the records (`withdraw`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from altmesh.backoff import Backoff
from altmesh.config import Config, ServiceSettings
from altmesh.dashboard_client import DashboardClient, DashboardError, read_token
from altmesh.keyfile import encode_public_key, public_from_private, read_private_key
from altmesh.protocol import node_address

log = logging.getLogger("altmesh.client.publish")

RETRY_MIN_SECONDS = 0.5
RETRY_MAX_SECONDS = 60.0
TIMEOUT_SECONDS = 10.0  # per request


@dataclass(frozen=True)
class ServiceRecord:
    """What the dashboard publishes for a service: the body of /services/register."""

    name: str
    public_key: str
    address: str


def service_record(config: Config) -> ServiceRecord:
    """The service's name, public key and address, from its config and private key file.

    Raises KeyFileError when the key cannot be read."""
    service = _service(config)
    assert service.name is not None
    public = public_from_private(read_private_key(config.node.private_key_file))
    return ServiceRecord(
        service.name, encode_public_key(public), str(node_address(config.network.prefix, public))
    )


def publishes(config: Config) -> bool:
    """Whether this node registers its service with a dashboard."""
    service = config.service
    return (
        config.role == "service"
        and service is not None
        and service.name is not None
        and service.dashboard_url is not None
        and service.token_file is not None
    )


def _service(config: Config) -> ServiceSettings:
    service = config.service
    if service is None or service.dashboard_url is None or service.token_file is None:
        raise ValueError("the config has no [service] dashboard_url and token_file")
    return service


def _client(service: ServiceSettings) -> DashboardClient:
    assert service.dashboard_url is not None and service.token_file is not None
    return DashboardClient(
        service.dashboard_url,
        read_token(service.token_file),
        ca_file=service.ca_file,
        timeout=TIMEOUT_SECONDS,
    )


class ServicePublisher:
    """Registers one service, retrying in a thread until the dashboard has taken it."""

    def __init__(self, config: Config) -> None:
        self.service = _service(config)
        self.record = service_record(config)
        assert self.service.token_file is not None
        read_token(self.service.token_file)  # KeyFileError now rather than in the thread
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="altmesh-service-publisher", daemon=True
        )
        self.registered = threading.Event()
        self.gave_up: DashboardError | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, wait: float = 1.0) -> None:
        """End the retries; a request under way is not waited for beyond `wait` seconds."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(wait)

    def _run(self) -> None:
        backoff = Backoff(RETRY_MIN_SECONDS, RETRY_MAX_SECONDS)
        client = _client(self.service)
        record = self.record
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    answer = client.register_service(record.name, record.public_key, record.address)
                except DashboardError as error:
                    failures += 1
                    if not error.retry_helps:
                        log.error(
                            "dashboard refused to publish %s (%s): %s; not retried",
                            record.name,
                            error.kind,
                            error,
                        )
                        self.gave_up = error
                        return
                    delay = backoff.next_delay()
                    if failures == 1 or failures % 10 == 0:
                        log.warning(
                            "cannot publish %s yet (%s, %d attempts): %s; retrying in %.1f s",
                            record.name,
                            error.kind,
                            failures,
                            error,
                            delay,
                        )
                    self._stop.wait(delay)
                    continue
                log.info(
                    "published %s (%s) through %s: DNS %s%s",
                    record.name,
                    record.address,
                    client.url,
                    answer.get("dns", "?"),
                    "" if answer.get("changed", True) else " (unchanged)",
                )
                self.registered.set()
                return
        finally:
            client.close()


def withdraw(config: Config) -> dict[str, object]:
    """Remove the service's records from DNS through the dashboard (`altmesh withdraw`); the
    dashboard's answer (`name`, `dns`, `changed`). Raises DashboardError or KeyFileError."""
    service = _service(config)
    assert service.name is not None
    client = _client(service)
    try:
        return client.withdraw_service(service.name)
    finally:
        client.close()
