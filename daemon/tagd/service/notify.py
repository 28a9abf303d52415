"""systemd's sd_notify protocol, without libsystemd.

When systemd starts a `Type=notify` unit it sets $NOTIFY_SOCKET to the path of
an AF_UNIX datagram socket ("@name" for the abstract namespace). The service
sends newline-separated KEY=VALUE assignments to it, one datagram per message:

- READY=1          startup is done (systemd waits for this before "active")
- STATUS=text      one line shown by `systemctl status`
- WATCHDOG=1       keep-alive; with WatchdogSec= set, systemd restarts the
                   service when pings stop for longer ($WATCHDOG_USEC)
- RELOADING=1      a config reload started (READY=1 again ends it)
- STOPPING=1       shutdown started

Outside systemd (no $NOTIFY_SOCKET) every call is a no-op. A failed send is
logged once and never raised: a status line is not worth a crash.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

log = logging.getLogger(__name__)


SEND_TIMEOUT = 2.0  # seconds


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self.address = address or None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # A receiver that stops reading must not stall a scan: give up on the message.
            self._sock.settimeout(SEND_TIMEOUT)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, **fields: str | int) -> bool:
        """Send KEY=VALUE lines in one datagram; True when it was sent."""
        if self._sock is None or self.address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        try:
            with self._lock:  # the scan thread and the main loop both send
                self._sock.sendto(message.encode("utf-8", "replace"), self.address)
            return True
        except OSError as exc:
            if not self._warned:
                log.warning("cannot notify systemd at %s: %s", os.environ.get("NOTIFY_SOCKET"), exc)
                self._warned = True
            return False

    def ready(self, status: str | None = None) -> bool:
        return self.send(READY=1, **({"STATUS": status} if status else {}))

    def status(self, text: str) -> bool:
        # STATUS is one line; systemd shows it as is.
        return self.send(STATUS=text.replace("\n", " "))

    def reloading(self) -> bool:
        return self.send(
            RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        )

    def stopping(self, status: str | None = None) -> bool:
        return self.send(STOPPING=1, **({"STATUS": status} if status else {}))

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval() -> float | None:
    """Seconds between the keep-alives systemd expects (half its timeout), or None.

    $WATCHDOG_PID, when set, names the process meant; a child that inherited
    the variables must not ping for its parent.
    """
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        timeout = int(usec) / 1e6
    except ValueError:
        return None
    return timeout / 2 if timeout > 0 else None
