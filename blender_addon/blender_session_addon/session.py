"""One client connection and the session it speaks for (no bpy).

A `SessionConnection` is created when a client connects. Its session id starts as a generated
`blender-YYYYMMDD-HHMMSS-xxxxxxxx` and becomes the request's top-level `session_id` as soon as a
request carries one (the manager sends it on every request, so `execute_code` namespaces follow the
session across reconnects). Activity fields are written by the connection's own thread and read by the
sweeper and by `get_sessions_info`; the values are plain floats and ints, so no lock is needed to read
them consistently enough for reporting.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from datetime import datetime, timezone
from typing import Any, Optional


def new_session_id(now: Optional[float] = None) -> str:
    """`blender-YYYYMMDD-HHMMSS-xxxxxxxx`: UTC creation time plus 8 lowercase hex digits."""
    stamp = datetime.fromtimestamp(time.time() if now is None else now, tz=timezone.utc)
    return f"blender-{stamp:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"


class SessionConnection:
    """A connected client: its socket, its session id and its activity counters."""

    def __init__(self, client: socket.socket, address: Any, connection_number: int) -> None:
        now = time.time()
        self.client = client
        self.address = address
        self.connection_number = connection_number
        self.session_id = new_session_id(now)
        self.session_id_from_client = False
        self.created_at = now
        self.last_activity = now
        self.command_count = 0
        self.busy = False  # a command of this connection is queued or running
        self.last_state_sent: Optional[dict[str, Any]] = None  # last "_state" put in a reply
        self.close_reason: Optional[str] = None
        self._close_lock = threading.Lock()
        self._closed = False

    def update_activity(self) -> None:
        self.last_activity = time.time()

    def is_idle(self, timeout: float, now: Optional[float] = None) -> bool:
        """Idle: nothing received or answered for `timeout` seconds and no command in flight."""
        if self.busy:
            return False
        return ((time.time() if now is None else now) - self.last_activity) > timeout

    def adopt_session_id(self, session_id: str) -> None:
        """Take the session id a request named (the manager's, for namespace continuity)."""
        self.session_id = session_id
        self.session_id_from_client = True

    def close(self, reason: str) -> None:
        """Ask the connection to end: shut the socket down so a recv() blocked on it returns EOF.

        Any thread may call this. The file descriptor itself is released by the connection's own
        thread (`release`), so a descriptor number is never closed under a thread still using it.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self.close_reason = reason
        try:
            self.client.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def release(self) -> None:
        """Close the socket; called once by the connection's own thread when it is done."""
        self.close(self.close_reason or "closed")
        try:
            self.client.close()
        except OSError:
            pass

    @property
    def closed(self) -> bool:
        return self._closed

    def info(self, idle_timeout: float, now: Optional[float] = None) -> dict[str, Any]:
        """The seed's session info shape, plus a few extras for the panel and the manager."""
        now = time.time() if now is None else now
        host, port = (self.address[0], self.address[1]) if isinstance(self.address, tuple) else ("", 0)
        return {
            "session_id": self.session_id,
            "created_at": self.created_at,
            "last_activity": self.last_activity,
            "command_count": self.command_count,
            "idle": self.is_idle(idle_timeout, now),
            "idle_seconds": max(0.0, now - self.last_activity),
            "busy": self.busy,
            "client": f"{host}:{port}",
            "connection": self.connection_number,
        }
