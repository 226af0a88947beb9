"""Checks of a config against the host it runs on: files, directories, modes, addresses.

These are the checks start-up would otherwise fail on, run before anything starts, so that
`altmesh check-config` (and `altmesh-relay --check`) fails exactly where start-up would. They run
as the user who runs the check: run it as the user the service runs as.

They do not check that listen ports are free: the running node holds them while its role
re-validates a changed file.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import stat
from pathlib import Path

from altmesh.config.errors import ConfigError, Problems
from altmesh.config.model import (
    ClientSettings,
    DashboardSettings,
    HostPort,
    LogConfig,
    MeshSettings,
    NodeConfig,
    RelaySettings,
    ServiceSettings,
)
from altmesh.config.values import ip_address
from altmesh.keyfile import (
    KeyFileError,
    decode_public_key,
    public_from_private,
    read_private_key,
    read_secret_file,
)

# sun_path of struct sockaddr_un holds 108 bytes on Linux, one of them the terminating NUL.
MAX_UNIX_SOCKET_PATH = 107


def check_host(
    problems: Problems,
    *,
    node: NodeConfig | None,
    log: LogConfig,
    relay: RelaySettings | None = None,
    mesh: MeshSettings | None = None,
    dashboard: DashboardSettings | None = None,
    client: ClientSettings | None = None,
    service: ServiceSettings | None = None,
) -> None:
    """Record every problem the host would give these settings at start-up.

    Takes the tables that parsed, so that a problem elsewhere in the file does not hide these.
    """
    own_keys: frozenset[bytes] = frozenset()
    if node is not None:
        own_keys = _check_keys(node, problems)
        _check_directory(node.state_dir, "node.state_dir", problems)
    if log.events_file is not None:
        _check_output_file(log.events_file, "log.events_file", problems, make_parents=True)
    if relay is not None:
        _check_listen(relay.listen, "relay.listen", problems)
        if relay.metrics_listen is not None:
            _check_listen(relay.metrics_listen, "relay.metrics_listen", problems)
        if relay.allowed_keys_file is not None:
            try:
                read_allowed_keys(relay.allowed_keys_file)
            except ConfigError as err:
                problems.add_error(err)
        if relay.forwarded_capture_file is not None:
            # The relay opens it for appending without creating directories.
            _check_output_file(
                relay.forwarded_capture_file,
                "relay.forwarded_capture_file",
                problems,
                make_parents=False,
            )
    if mesh is not None and own_keys:
        for index, peer in enumerate(mesh.peers):
            for key_field, key in (
                ("public_key", peer.public_key),
                ("previous_public_key", peer.previous_public_key),
            ):
                if key is not None and decode_public_key(key) in own_keys:
                    problems.add(
                        f"mesh.peers[{index}].{key_field}",
                        "is this relay's own key (node.private_key_file)",
                    )
    if dashboard is not None:
        _check_token(dashboard.token_file, "dashboard.token_file", problems)
        if dashboard.ca_file is not None:
            _check_ca_file(dashboard.ca_file, "dashboard.ca_file", problems)
    if service is not None and service.token_file is not None:
        _check_token(service.token_file, "service.token_file", problems)
        if service.ca_file is not None:
            _check_ca_file(service.ca_file, "service.ca_file", problems)
    if client is not None:
        if client.socks_listen is not None:
            _check_listen(client.socks_listen, "client.socks_listen", problems)
        if client.status_page is not None:
            _check_listen(client.status_page, "client.status_page", problems)
        _check_control_socket(client.control_socket, "client.control_socket", problems)


def read_allowed_keys(path: Path) -> frozenset[bytes]:
    """The keys of an allowed-keys file: one base64 key per line, `#` starts a comment.

    Raises ConfigError (field `relay.allowed_keys_file`) listing every bad line.
    """
    field_name = "relay.allowed_keys_file"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(field_name, f"{path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(field_name, f"{path} is a directory, not a file of keys") from None
    except UnicodeDecodeError:
        raise ConfigError(field_name, f"{path} is not UTF-8 text") from None
    except OSError as err:
        raise ConfigError(field_name, f"cannot read {path}: {err.strerror}") from None
    keys: set[bytes] = set()
    bad: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            keys.add(decode_public_key(entry.split()[0]))
        except ValueError as err:
            bad.append(f"{path} line {number}: {err}")
    if bad:
        problems = Problems("")
        for problem in bad:
            problems.add(field_name, problem)
        problems.raise_if_any()
    return frozenset(keys)


def _check_keys(node: NodeConfig, problems: Problems) -> frozenset[bytes]:
    """Check the node's key files; return the public keys of those that are good."""
    public: set[bytes] = set()
    files = [("node.private_key_file", node.private_key_file)]
    if node.previous_private_key_file is not None:
        files.append(("node.previous_private_key_file", node.previous_private_key_file))
    for field_name, path in files:
        try:
            public.add(public_from_private(read_private_key(path)))
        except KeyFileError as err:
            hint = ""
            if _stat_or_error(path) is None:
                hint = f" (make it on this host: altmesh keygen --out {path})"
            problems.add(field_name, f"{err}{hint}")
    return frozenset(public)


def _check_token(path: Path, field_name: str, problems: Problems) -> None:
    try:
        token = read_secret_file(path, "token")
    except KeyFileError as err:
        problems.add(field_name, str(err))
        return
    if not token.strip():
        problems.add(field_name, f"{path} is empty (it must hold a token made by the dashboard)")


def _check_ca_file(path: Path, field_name: str, problems: Problems) -> None:
    info = _stat_or_error(path)
    if info is None:
        problems.add(field_name, f"{path} does not exist")
        return
    if isinstance(info, OSError):
        problems.add(field_name, f"cannot read {path}: {info.strerror}")
        return
    if not stat.S_ISREG(info.st_mode):
        problems.add(field_name, f"{path} is not a file (a PEM bundle of CA certificates)")
        return
    try:
        ssl.create_default_context(cafile=str(path))
    except ssl.SSLError:
        problems.add(field_name, f"{path} holds no PEM CA certificate that can be loaded")
    except OSError as err:
        problems.add(field_name, f"cannot read {path}: {err.strerror}")


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if _stat_or_error(candidate) is not None:
            return candidate
    return Path("/")


def _stat_or_error(path: Path) -> os.stat_result | OSError | None:
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        return err


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


def _creatable(path: Path) -> str | None:
    """Why `path` (absent) could not be created with its missing parents, or None."""
    ancestor = _nearest_existing(path.parent)
    info = _stat_or_error(ancestor)
    if isinstance(info, OSError):
        return f"cannot be created: cannot look at {ancestor}: {info.strerror}"
    if info is not None and not stat.S_ISDIR(info.st_mode):
        return f"cannot be created: {ancestor} is a file, not a directory"
    if not _writable(ancestor):
        return f"does not exist and cannot be created: {ancestor} is not writable by this user"
    return None


def _check_directory(path: Path, field_name: str, problems: Problems) -> None:
    info = _stat_or_error(path)
    if isinstance(info, OSError):
        problems.add(field_name, f"{path}: cannot look at it: {info.strerror}")
    elif info is None:
        reason = _creatable(path)
        if reason:
            problems.add(field_name, f"{path} {reason}")
    elif not stat.S_ISDIR(info.st_mode):
        problems.add(field_name, f"{path} is a file, not a directory")
    elif not _writable(path):
        problems.add(field_name, f"{path} is not writable by this user")


def _check_output_file(path: Path, field_name: str, problems: Problems, make_parents: bool) -> None:
    info = _stat_or_error(path)
    if isinstance(info, OSError):
        problems.add(field_name, f"{path}: cannot look at it: {info.strerror}")
    elif info is not None:
        if stat.S_ISDIR(info.st_mode):
            problems.add(field_name, f"{path} is a directory; give the path of a file")
        elif not os.access(path, os.W_OK):
            problems.add(field_name, f"{path} is not writable by this user")
    elif make_parents:
        reason = _creatable(path)
        if reason:
            problems.add(field_name, f"{path} {reason}")
    else:
        parent = _stat_or_error(path.parent)
        if parent is None or isinstance(parent, OSError) or not stat.S_ISDIR(parent.st_mode):
            problems.add(field_name, f"{path}: its directory {path.parent} does not exist")
        elif not _writable(path.parent):
            problems.add(field_name, f"{path}: its directory {path.parent} is not writable")


def _check_listen(address: HostPort, field_name: str, problems: Problems) -> None:
    """The address must be one of this host's (binding port 0 there says so without a port)."""
    literal = ip_address(address.host)
    if literal is None or literal.is_unspecified:
        return  # localhost, or every address
    family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((address.host, 0))
    except OSError as err:
        if err.errno == errno.EADDRNOTAVAIL:
            problems.add(field_name, f"{address.host} is not an address of this host")
        else:
            problems.add(field_name, f"cannot listen on {address.host}: {err.strerror}")


def _check_control_socket(path: Path, field_name: str, problems: Problems) -> None:
    size = len(os.fsencode(path))
    if size > MAX_UNIX_SOCKET_PATH:
        problems.add(
            field_name,
            f"{path} is {size} bytes long; a Unix socket path is at most {MAX_UNIX_SOCKET_PATH}",
        )
    info = _stat_or_error(path)
    if info is not None and not isinstance(info, OSError) and stat.S_ISDIR(info.st_mode):
        problems.add(field_name, f"{path} is a directory; give the path of the socket")
    parent = path.parent
    parent_info = _stat_or_error(parent)
    if parent_info is None:
        reason = _creatable(parent)
        if reason:
            problems.add(field_name, f"{parent} {reason}")
    elif isinstance(parent_info, OSError) or not stat.S_ISDIR(parent_info.st_mode):
        problems.add(field_name, f"{path}: {parent} is not a directory")
    elif not _writable(parent):
        problems.add(field_name, f"{path}: its directory {parent} is not writable by this user")
