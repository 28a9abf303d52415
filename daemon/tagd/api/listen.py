"""The `[api] listen` address: parsing it, and whether it lets other machines in.

No web framework here: the config checks import this module.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

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
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ListenError(f"port {port!r} must be a number from 1 to 65535; {expected}")
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
