"""systemd's notification protocol (``Type=notify``), with no dependency.

A service started by systemd with ``Type=notify`` finds ``NOTIFY_SOCKET``
in its environment: the path of an ``AF_UNIX`` datagram socket, or, when
it starts with ``@``, a name in the abstract namespace.  Each datagram
sent there holds newline-separated ``NAME=value`` assignments:
``READY=1`` (started), ``STOPPING=1`` (stopping), ``WATCHDOG=1`` (alive:
with ``WatchdogSec=`` set, systemd passes ``WATCHDOG_USEC`` and kills the
service when no ``WATCHDOG=1`` came within that time), ``STATUS=text``
(shown by ``systemctl status``).  Without ``NOTIFY_SOCKET`` nothing is
sent.  ``WATCHDOG_PID``, when set, names the process the watchdog is meant
for; another process keeps quiet.

Sending never blocks and never raises: a notification systemd cannot take
is dropped (systemd is the one that cares).
"""

from __future__ import annotations

import os
import socket
from typing import Mapping, Optional, Tuple

__all__ = ["Notifier"]


class Notifier:
    """The service manager's notification socket, if there is one.

    ``environ`` defaults to ``os.environ``, read once here.
    """

    def __init__(self, environ: Optional[Mapping[str, str]] = None) -> None:
        env = os.environ if environ is None else environ
        self.address: Optional[str] = None
        self.watchdog_usec: Optional[int] = None
        self._sock: Optional[socket.socket] = None
        self._sent_status: Optional[str] = None
        raw = env.get("NOTIFY_SOCKET", "")
        if raw.startswith("@"):
            self.address = "\0" + raw[1:]       # the abstract namespace
        elif raw.startswith("/"):
            self.address = raw
        # (other forms, such as vsock: addresses, are not handled: nothing is sent)
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        try:
            mine = not pid or int(pid) == os.getpid()
        except ValueError:
            mine = False
        if usec.isdigit() and int(usec) > 0 and mine:
            self.watchdog_usec = int(usec)

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self.address is not None

    @property
    def watchdog_interval(self) -> Optional[float]:
        """Seconds between two ``WATCHDOG=1`` (half of ``WATCHDOG_USEC``),
        or None when systemd does not watch this process."""
        if self.address is None or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2e6

    def send(self, *assignments: str) -> bool:
        """Send ``NAME=value`` assignments as one datagram; True when it was
        sent.  A newline inside a value is replaced by a blank."""
        if self.address is None or not assignments:
            return False
        data = "\n".join(a.replace("\n", " ") for a in assignments).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(data, self.address)
            return True
        except OSError:
            return False

    def ready(self, status: Optional[str] = None) -> bool:
        return self.send("READY=1", *self._status(status))

    def stopping(self, status: Optional[str] = None) -> bool:
        return self.send("STOPPING=1", *self._status(status))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """``STATUS=text``, only when it differs from the last one sent."""
        if text == self._sent_status:
            return False
        return self.send(*self._status(text))

    def _status(self, text: Optional[str]) -> Tuple[str, ...]:
        if text is None:
            return ()
        self._sent_status = text
        return ("STATUS=" + text,)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
