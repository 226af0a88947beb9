"""Start a real `named` (Debian's bind9) on loopback for tests, with a signed zone, TSIG and rndc.

    with NamedServer.start(tmp_path, records=["www 300 IN AAAA fd00::1"],
                           tsig_keys={"dashboard": secret}, update_key="dashboard") as named:
        dns.query.udp(query, named.address, port=named.port)

Why it is built the way it is (behaviour of BIND 9.18 as packaged in Debian 12):
- `recursion no;` and no root hints, so named never tries to reach the internet's root servers.
- Two `named` can share one port silently (SO_REUSEPORT), so the ports are checked free first by
  binding them without SO_REUSEPORT, and `.stop()` waits on the PID rather than trusting
  `rndc stop`, which returns about two seconds before named exits. If a port is taken between
  the check and named's bind (a race with another process), start() retries with new ports.
- named runs in the foreground (`-g`: like `-f`, but its whole log, including errors met before
  the configuration is loaded such as a port in use, goes to stderr, kept in `named.out` and
  quoted by `NamedStartError`) as the current user with every file it writes inside `workdir`.
  Debian's AppArmor profile for named would forbid that, so an enforcing profile is reported up
  front instead of surfacing later as an obscure permission error (this machine's kernel has no
  AppArmor, so nothing interferes here).
- `start()` returns only once the zone answers with a signed SOA, so tests never race signing.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from altmesh.testing import ports

NAMED_BINARY = Path("/usr/sbin/named")
RNDC_BINARY = Path("/usr/sbin/rndc")
LOOPBACK = "127.0.0.1"
TSIG_ALGORITHM = "hmac-sha256"
RNDC_KEY_NAME = "altmesh-test-rndc"
START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0
_APPARMOR_PROFILES = Path("/sys/kernel/security/apparmor/profiles")
_LOG_TAIL_LINES = 40
PORT_ATTEMPTS = 3


class NamedStartError(RuntimeError):
    """named could not be started or did not serve the signed zone in time; carries its log."""


class _PortTakenError(NamedStartError):
    """A port checked free was taken before named bound it (a race with another process)."""


def free_port(*, udp_too: bool, avoid: frozenset[int] = frozenset()) -> int:
    """A loopback port free for TCP (and UDP when `udp_too`), other than those in `avoid`."""
    try:
        return ports.free_port(udp_too=udp_too, avoid=avoid)
    except ports.NoFreePortError as err:
        raise NamedStartError(f"no free loopback port for named: {err}") from err


def _apparmor_confines_named() -> bool:
    try:
        profiles = _APPARMOR_PROFILES.read_text()
    except OSError:
        return False  # AppArmor not enabled in this kernel
    return any(
        line.split(" ", 1)[0] in ("named", str(NAMED_BINARY)) and "(enforce)" in line
        for line in profiles.splitlines()
    )


def _key_clause(name: str, secret: str) -> str:
    return f'key "{name}" {{\n\talgorithm {TSIG_ALGORITHM};\n\tsecret "{secret}";\n}};\n'


def _check_secret(name: str, secret: str) -> None:
    try:
        base64.b64decode(secret, validate=True)
    except ValueError:
        raise ValueError(f"tsig_keys[{name!r}]: secret is not valid base64") from None
    if not secret or '"' in name or not name:
        raise ValueError(f"tsig_keys: bad key name {name!r} or empty secret")


class NamedServer:
    """A running `named` serving one zone on `address`:`port`; stop it with `.stop()`."""

    def __init__(
        self,
        *,
        workdir: Path,
        zone: str,
        port: int,
        rndc_port: int,
        rndc_key_file: Path,
        tsig_keys: Mapping[str, str],
        process: subprocess.Popen[bytes],
        output: IO[bytes],
    ) -> None:
        self.workdir = workdir
        self.address = LOOPBACK
        self.port = port
        self.zone = zone
        self.rndc_port = rndc_port
        self.rndc_key_file = rndc_key_file
        self.tsig_keys = dict(tsig_keys)
        self.tsig_algorithm = TSIG_ALGORITHM
        self.conf_path = workdir / "named.conf"
        self.log_path = workdir / "named.out"  # named -g: all of its log, on stderr
        self.trust_anchor = ""
        self.ds = ""
        self._process = process
        self._output = output

    @property
    def pid(self) -> int:
        return self._process.pid

    # ----------------------------------------------------------------- starting

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        zone: str = "alt.",
        records: Sequence[str] = (),
        tsig_keys: Mapping[str, str] | None = None,
        update_key: str | None = None,
        dnssec: bool = True,
    ) -> NamedServer:
        """Write a config for `zone` into `workdir`, start named and wait for the signed zone.

        `records` are zone-file lines relative to the zone (`"www 300 IN AAAA fd00::1"`).
        `tsig_keys` maps key names to base64 hmac-sha256 secrets; every key may transfer the
        zone, and `update_key` (one of them) may update any name in it (update-policy zonesub).
        """
        if not NAMED_BINARY.exists():
            raise NamedStartError(f"{NAMED_BINARY} is missing: install Debian's bind9 package")
        if _apparmor_confines_named():
            raise NamedStartError(
                "AppArmor enforces a profile on named, which forbids writing the test files in "
                f"{workdir}; run `aa-complain {NAMED_BINARY}` on this test machine"
            )
        keys = dict(tsig_keys or {})
        for name, secret in keys.items():
            _check_secret(name, secret)
        if update_key is not None and update_key not in keys:
            raise ValueError(f"update_key {update_key!r} is not one of tsig_keys {sorted(keys)}")
        origin = dns.name.from_text(zone)
        zone = origin.to_text()

        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "keys").mkdir(exist_ok=True)
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                return cls._start_once(
                    workdir,
                    zone=zone,
                    records=records,
                    keys=keys,
                    update_key=update_key,
                    dnssec=dnssec,
                )
            except _PortTakenError:
                # Another process took a port between our check and named's bind: pick new ones.
                if attempt == PORT_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def _start_once(
        cls,
        workdir: Path,
        *,
        zone: str,
        records: Sequence[str],
        keys: Mapping[str, str],
        update_key: str | None,
        dnssec: bool,
    ) -> NamedServer:
        port = free_port(udp_too=True)
        rndc_port = free_port(udp_too=False, avoid=frozenset({port}))
        rndc_key_file = workdir / "rndc.key"
        rndc_key_file.write_text(
            _key_clause(RNDC_KEY_NAME, base64.b64encode(secrets.token_bytes(32)).decode())
        )
        rndc_key_file.chmod(0o600)
        tsig_file = workdir / "tsig.keys"
        tsig_file.write_text("".join(_key_clause(n, s) for n, s in keys.items()))
        tsig_file.chmod(0o600)
        zone_file = workdir / "zone.db"
        zone_file.write_text(_zone_text(zone, records))
        (workdir / "named.conf").write_text(
            _named_conf(
                workdir=workdir,
                zone=zone,
                port=port,
                rndc_port=rndc_port,
                rndc_key_file=rndc_key_file,
                tsig_file=tsig_file,
                zone_file=zone_file,
                key_names=list(keys),
                update_key=update_key,
                dnssec=dnssec,
            )
        )
        output = (workdir / "named.out").open("wb")
        process = subprocess.Popen(
            # -g: foreground, and every message (also those before the config is loaded, such as
            # a port already in use) goes to stderr, which lands in named.out for log_tail().
            [str(NAMED_BINARY), "-g", "-4", "-c", str(workdir / "named.conf")],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
        server = cls(
            workdir=workdir,
            zone=zone,
            port=port,
            rndc_port=rndc_port,
            rndc_key_file=rndc_key_file,
            tsig_keys=keys,
            process=process,
            output=output,
        )
        try:
            server._wait_until_serving(signed=dnssec)
        except _PortTakenError:
            server.stop(use_rndc=False)  # its control port may belong to someone else
            raise
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_until_serving(self, *, signed: bool) -> None:
        origin = dns.name.from_text(self.zone)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        last_problem = "no answer yet"
        while time.monotonic() < deadline:
            if self._port_was_taken():
                raise _PortTakenError(f"a port of named was taken\n{self.log_tail()}")
            if self._process.poll() is not None:
                raise NamedStartError(
                    f"named exited with status {self._process.returncode} while starting"
                    f"\n{self.log_tail()}"
                )
            if self._zone_failed_to_load():
                raise NamedStartError(f"named could not load zone {self.zone}\n{self.log_tail()}")
            query = dns.message.make_query(origin, dns.rdatatype.SOA, want_dnssec=True)
            try:
                answer = dns.query.udp(query, self.address, port=self.port, timeout=0.3)
            except (dns.exception.Timeout, OSError) as err:
                last_problem = f"query failed: {err!r}"
                time.sleep(0.05)
                continue
            soa = answer.get_rrset(answer.answer, origin, dns.rdataclass.IN, dns.rdatatype.SOA)
            rrsig = answer.get_rrset(
                answer.answer, origin, dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.SOA
            )
            if soa is not None and (rrsig is not None or not signed):
                if signed:
                    self._read_trust_anchor(origin)
                return
            last_problem = f"SOA answer without signature: {answer.to_text()!r}"
            time.sleep(0.05)
        raise NamedStartError(
            f"named did not serve a {'signed ' if signed else ''}{self.zone} SOA on "
            f"{self.address}:{self.port} within {START_TIMEOUT_SECONDS:.0f} s "
            f"({last_problem})\n{self.log_tail()}"
        )

    def _log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _zone_failed_to_load(self) -> bool:
        return "not loaded due to errors" in self._log_text()

    def _port_was_taken(self) -> bool:
        text = self._log_text()
        return "unable to listen on any configured interfaces" in text or (
            "command channel" in text and "address in use" in text
        )

    def _read_trust_anchor(self, origin: dns.name.Name) -> None:
        query = dns.message.make_query(origin, dns.rdatatype.DNSKEY, want_dnssec=True)
        answer = dns.query.tcp(query, self.address, port=self.port, timeout=2.0)
        keys = answer.find_rrset(answer.answer, origin, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
        secure_entry_points = [key for key in keys if key.flags & 0x0001]
        if len(secure_entry_points) != 1:
            raise NamedStartError(
                f"expected one key-signing DNSKEY for {self.zone}, got {keys.to_text()!r}"
            )
        ksk = secure_entry_points[0]
        self.trust_anchor = f"{self.zone} IN DNSKEY {ksk.to_text()}"
        ds = dns.dnssec.make_ds(origin, ksk, "SHA256")
        self.ds = f"{self.zone} IN DS {ds.to_text()}"

    # ------------------------------------------------------------------ helpers

    def trust_anchor_rrset(self) -> dns.rrset.RRset:
        """The KSK as an RRset, ready for `dns.dnssec.validate(..., {zone: rrset})`."""
        owner, _class, _type, rdata = self.trust_anchor.split(" ", 3)
        return dns.rrset.from_text(owner, 3600, "IN", "DNSKEY", rdata)

    def rndc(self, *args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        """Run `rndc` against this server (e.g. `named.rndc("status")`)."""
        return subprocess.run(
            [
                str(RNDC_BINARY),
                "-s",
                self.address,
                "-p",
                str(self.rndc_port),
                "-k",
                str(self.rndc_key_file),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        text = self._log_text()
        if not text:
            return "(named wrote no log)"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- {self.log_path} ---\n{tail}"

    # ----------------------------------------------------------------- stopping

    def is_running(self) -> bool:
        return self._process.poll() is None

    def stop(self, *, use_rndc: bool = True) -> None:
        """Stop named (rndc stop, then SIGTERM, then SIGKILL) and wait until its PID is gone."""
        try:
            if self._process.poll() is None:
                if use_rndc:
                    with contextlib.suppress(OSError, subprocess.SubprocessError):
                        self.rndc("stop", timeout=5.0)
                else:
                    self._process.send_signal(signal.SIGTERM)
                try:
                    self._process.wait(timeout=STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    self._process.send_signal(signal.SIGTERM)
                    try:
                        self._process.wait(timeout=5.0)
                    except subprocess.TimeoutExpired:
                        self._process.kill()
                        self._process.wait()
        finally:
            self._output.close()

    def __enter__(self) -> NamedServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<NamedServer {self.zone} at {self.address}:{self.port} pid {self.pid}>"


def _zone_text(zone: str, records: Sequence[str]) -> str:
    lines = [
        f"$ORIGIN {zone}",
        "$TTL 300",
        f"@ IN SOA ns1.{zone} hostmaster.{zone} 1 3600 600 86400 300",
        f"@ IN NS ns1.{zone}",
        f"ns1 IN A {LOOPBACK}",
        *records,
    ]
    return "\n".join(lines) + "\n"


def _named_conf(
    *,
    workdir: Path,
    zone: str,
    port: int,
    rndc_port: int,
    rndc_key_file: Path,
    tsig_file: Path,
    zone_file: Path,
    key_names: Sequence[str],
    update_key: str | None,
    dnssec: bool,
) -> str:
    transfer = "".join(f'key "{name}"; ' for name in key_names) or f"{LOOPBACK}; "
    zone_options = [
        "type primary;",
        f'file "{zone_file}";',
        f"allow-transfer {{ {transfer}}};",
    ]
    if update_key is not None:
        zone_options.append(f'update-policy {{ grant "{update_key}" zonesub ANY; }};')
    if dnssec:
        zone_options += ["dnssec-policy default;", "inline-signing yes;"]
    zone_body = "\n\t".join(zone_options)
    return f"""// written by altmesh.testing.named for one test run
include "{rndc_key_file}";
include "{tsig_file}";

options {{
	directory "{workdir}";
	key-directory "{workdir / "keys"}";
	managed-keys-directory "{workdir}";
	pid-file "{workdir / "named.pid"}";
	session-keyfile "{workdir / "session.key"}";
	dump-file "{workdir / "named.dump"}";
	statistics-file "{workdir / "named.stats"}";
	listen-on port {port} {{ {LOOPBACK}; }};
	listen-on-v6 {{ none; }};
	recursion no;
	dnssec-validation no;
	notify no;
	allow-query {{ any; }};
	empty-zones-enable no;
}};

controls {{
	inet {LOOPBACK} port {rndc_port} allow {{ {LOOPBACK}; }} keys {{ "{RNDC_KEY_NAME}"; }};
}};

zone "{zone}" {{
	{zone_body}
}};
"""
