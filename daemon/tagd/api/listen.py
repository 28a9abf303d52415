"""The `[api] listen` address: parsing it, and whether it lets other machines in.

No web framework here: the config checks import this module.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
import threading
from dataclasses import dataclass
from typing import Any

from tagd.config import ApiSettings

# A host name as DNS allows it (letters, digits, '-', dots between labels).
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


class ListenError(ValueError):
    """A listen address that cannot be used; the message says what is expected."""


@dataclass(frozen=True)
class Listen:
    host: str  # an IP address or a host name, without IPv6 brackets
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def parse_listen(text: str) -> Listen:
    """'127.0.0.1:8765', 'localhost:8765', '[::1]:8765' -> Listen."""
    expected = 'expected "host:port", e.g. "127.0.0.1:8765" or "[::1]:8765"'
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ListenError(expected)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ListenError(f"{host!r} in brackets is not an IPv6 address; {expected}") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise ListenError(expected)
        if ":" in host:
            raise ListenError(f"write an IPv6 address in brackets; {expected}")
        if not _is_ip(host) and not _HOSTNAME.match(host):
            raise ListenError(f"{host!r} is not an IP address or host name; {expected}")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ListenError(
            f"port {port!r} must be a number from 0 (any free port) to 65535; {expected}"
        )
    return Listen(host, int(port))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    """Only this machine can reach it: 127.0.0.0/8, ::1 (also IPv4-mapped), localhost."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # any other name may resolve to a public address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def exposure_problem(api: ApiSettings, listen: Listen, key: str = "api.listen") -> str | None:
    """Why serving on `listen` must be refused: an address other machines can reach
    while no key is configured would give anyone on the network the catalog."""
    if listen.loopback or api.api_keys:
        return None
    return (
        f"{key} {listen.host}:{listen.port} lets other machines connect, but "
        "api.api_keys is empty, so anyone could: add a key (`tagd api-key new` prints "
        'the line for [api] api_keys) or listen on loopback ("127.0.0.1:8765")'
    )


def bind(listen: Listen) -> socket.socket:
    """The listening socket, bound before the server starts so that a taken port is
    a clear ListenError rather than uvicorn's log line."""
    try:
        infos = socket.getaddrinfo(listen.host, listen.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {listen.host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(
                f"{listen.host}:{listen.port} is taken by another program (another tagd?); "
                "stop it or choose a free port with [api] listen"
            ) from None
        raise ListenError(f"cannot listen on {listen.host}:{listen.port}: {exc.strerror}") from None
    return sock


class ApiServer:
    """uvicorn serving `app` on `sock` in a thread of its own (`tagd run`: the main
    thread keeps the signals)."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        import uvicorn

        # log_config None: uvicorn's lines go through tagd's logging.
        # A stop waits that long for requests in flight (an event stream never ends).
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.sock = sock
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="api", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()
