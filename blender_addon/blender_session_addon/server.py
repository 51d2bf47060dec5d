"""Keep-alive TCP server: one thread per connection, one `SessionConnection` each (no bpy).

Threads:

* the accept thread takes new connections and starts a connection thread for each;
* each connection thread reads, splits the bytes into requests with its own `FrameScanner`, and
  answers them one at a time, in order, keeping the socket open between requests (keep-alive);
* the sweeper wakes every `sweep_interval` seconds and shuts down connections idle for longer than
  `idle_timeout` (a connection with a command in flight is never idle).

What a request means is not this module's business: it hands each decoded request to `execute`,
a callable supplied by the front end that returns the reply (in Blender, by running the command on the
main thread and waiting). A malformed frame is answered here with `{"status": "error", ...}` and the
connection stays usable. `stop()` closes the listener and every connection and joins the threads.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from typing import Any, Callable, Optional

from .framing import DEFAULT_MAX_FRAME_BYTES, Frame, FrameError, FrameScanner, FrameTooLarge, encode_reply
from .session import SessionConnection

log = logging.getLogger(__name__)

Execute = Callable[[dict[str, Any], SessionConnection], dict[str, Any]]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9876
DEFAULT_IDLE_TIMEOUT = 300.0
DEFAULT_SWEEP_INTERVAL = 60.0

_RECV_BYTES = 65536


class SessionServer:
    def __init__(
        self,
        execute: Execute,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        sweep_interval: float = DEFAULT_SWEEP_INTERVAL,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        on_close: Optional[Callable[[SessionConnection], None]] = None,
    ) -> None:
        self.execute = execute
        self.on_close = on_close
        self.host = host
        self.port = port
        self.idle_timeout = idle_timeout
        self.sweep_interval = sweep_interval
        self.max_frame_bytes = max_frame_bytes
        self.changes = 0  # bumped whenever a session appears, changes or goes (the panel redraws)
        self._listener: Optional[socket.socket] = None
        self._connections: dict[int, SessionConnection] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when a connection stops being busy
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._connection_counter = 0

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._listener is not None and not self._stopping.is_set()

    def start(self) -> tuple[str, int]:
        """Bind and listen (port 0 picks a free port); return the address actually bound."""
        if self._listener is not None:
            raise RuntimeError("server already started")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(64)
            listener.settimeout(0.25)  # the accept loop notices stop() within this
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self.host, self.port = listener.getsockname()[:2]
        if not ipaddress.ip_address(self.host).is_loopback:
            log.warning(
                "listening on %s, reachable from other machines: execute_code runs any Python a client sends",
                self.host,
            )
        self._stopping.clear()
        for target, name in ((self._accept_loop, "accept"), (self._sweep_loop, "sweeper")):
            thread = threading.Thread(target=target, name=f"blender-session-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("listening on %s:%d", self.host, self.port)
        return self.host, self.port

    def stop(self, join_timeout: float = 5.0, reply_grace: float = 2.0) -> None:
        """Close the listener and every connection, then wait for the threads to end.

        A connection in the middle of a command gets up to `reply_grace` seconds to write its reply
        first (commands still queued for Blender fail at once once the queue is closed).
        """
        if self._listener is None:
            return
        self._stopping.set()
        if self._threads:
            self._threads[0].join(join_timeout)  # the accept thread: no new connections after this
        grace_until = time.monotonic() + reply_grace
        with self._idle:
            while any(c.busy for c in self._connections.values()):
                remaining = grace_until - time.monotonic()
                if remaining <= 0:
                    break
                self._idle.wait(remaining)
            connections = list(self._connections.values())
        for connection in connections:
            connection.close("server stopped")
        deadline = time.monotonic() + join_timeout
        for thread in list(self._threads):
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]
        try:
            self._listener.close()
        except OSError:
            pass
        self._listener = None
        log.info("stopped")

    # -- sessions ---------------------------------------------------------------------------

    def sessions_info(self) -> list[dict[str, Any]]:
        now = time.time()
        with self._lock:
            connections = sorted(self._connections.values(), key=lambda c: c.connection_number)
        return [c.info(self.idle_timeout, now) for c in connections]

    def live_session_ids(self) -> set[str]:
        with self._lock:
            return {c.session_id for c in self._connections.values()}

    def sweep_idle(self, now: Optional[float] = None) -> list[str]:
        """Close connections idle longer than idle_timeout; return their session ids."""
        now = time.time() if now is None else now
        with self._lock:
            idle = [c for c in self._connections.values() if c.is_idle(self.idle_timeout, now)]
        for connection in idle:
            log.info("closing idle session %s (idle %.1fs)", connection.session_id, now - connection.last_activity)
            connection.close("idle")
        return [c.session_id for c in idle]

    def _touch(self) -> None:
        self.changes += 1

    # -- threads ----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                client, address = listener.accept()
            except socket.timeout:
                continue
            except OSError as exc:
                if self._stopping.is_set():
                    break
                log.warning("accept failed: %s", exc)
                time.sleep(0.1)
                continue
            client.settimeout(None)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._connection_counter += 1
                connection = SessionConnection(client, address, self._connection_counter)
                self._connections[connection.connection_number] = connection
                if self._stopping.is_set():
                    connection.close("server stopped")
            self._touch()
            thread = threading.Thread(
                target=self._serve_connection,
                args=(connection,),
                name=f"blender-session-conn-{connection.connection_number}",
                daemon=True,
            )
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            thread.start()
            log.info("client %s connected as %s", address, connection.session_id)

    def _sweep_loop(self) -> None:
        while not self._stopping.wait(self.sweep_interval):
            try:
                self.sweep_idle()
            except Exception:  # noqa: BLE001 - the sweeper must outlive any surprise
                log.exception("idle sweep failed")

    def _serve_connection(self, connection: SessionConnection) -> None:
        scanner = FrameScanner(self.max_frame_bytes)
        try:
            while not self._stopping.is_set() and not connection.closed:
                try:
                    data = connection.client.recv(_RECV_BYTES)
                except OSError:
                    break
                if not data:
                    break
                connection.update_activity()
                for item in scanner.feed(data):
                    if isinstance(item, FrameTooLarge):
                        self._send(connection, _error(f"Message exceeds {item.limit} bytes"))
                        connection.close("frame too large")
                        break
                    if isinstance(item, FrameError):
                        sent = self._send(connection, _error(item.message))
                    else:
                        sent = self._answer(connection, item)
                    if not sent:
                        break
        finally:
            connection.release()
            with self._lock:
                self._connections.pop(connection.connection_number, None)
            self._touch()
            if self.on_close is not None:
                try:
                    self.on_close(connection)
                except Exception:  # noqa: BLE001
                    log.exception("on_close hook failed")
            log.info("session %s disconnected (%s)", connection.session_id, connection.close_reason)

    def _answer(self, connection: SessionConnection, frame: Frame) -> bool:
        """Run one request and write its reply; False when the reply could not be sent."""
        request = frame.value
        if not isinstance(request, dict):
            return self._send(connection, _error("Invalid request: expected a JSON object"))
        session_id = request.get("session_id")
        if isinstance(session_id, str) and session_id and session_id != connection.session_id:
            connection.adopt_session_id(session_id)
            self._touch()
        connection.busy = True  # until the reply is written: stop() lets it finish
        connection.command_count += 1
        try:
            try:
                reply = self.execute(request, connection)
            except Exception as exc:  # noqa: BLE001 - a failing command must not end the connection
                log.exception("command failed")
                reply = _error(str(exc) or type(exc).__name__)
            return self._send(connection, reply)
        finally:
            with self._idle:
                connection.busy = False
                self._idle.notify_all()
            connection.update_activity()
            self._touch()

    def _send(self, connection: SessionConnection, reply: Any) -> bool:
        try:
            connection.client.sendall(encode_reply(reply))
            return True
        except OSError:
            return False


def _error(message: str) -> dict[str, Any]:
    return {"status": "error", "message": message}
