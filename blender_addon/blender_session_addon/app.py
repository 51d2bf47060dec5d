"""Wiring shared by both front ends: server + dispatcher + Blender commands + main-thread queue.

The UI addon (`ui.py`) drains the queue from a `bpy.app.timers` timer; the headless runner
(`headless.py`) drains it from its own main loop. Either way the `SessionService` is built, started
and drained on Blender's main thread. While it runs, Blender's change notifications mark the
dispatcher's `_state` cache dirty (`scene_events`).
"""

from __future__ import annotations

from typing import Any

from . import scene_events
from .commands import BlenderCommands
from .dispatch import Dispatcher
from .mainthread import MainThreadQueue
from .server import DEFAULT_HOST, DEFAULT_IDLE_TIMEOUT, DEFAULT_PORT, DEFAULT_SWEEP_INTERVAL, SessionServer
from .session import SessionConnection


class SessionService:
    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        sweep_interval: float = DEFAULT_SWEEP_INTERVAL,
    ) -> None:
        self.main_thread = MainThreadQueue()
        self.commands = BlenderCommands(live_sessions=self._live_sessions)
        self.dispatcher = Dispatcher(
            self.main_thread,
            self.commands,
            sessions_info=self._sessions_info,
            is_running=self._is_running,
        )
        self.server = SessionServer(
            self.dispatcher,
            host=host,
            port=port,
            idle_timeout=idle_timeout,
            sweep_interval=sweep_interval,
            on_close=self._on_close,
        )

    def start(self) -> tuple[str, int]:
        """Start listening; call on the main thread. Returns the bound (host, port)."""
        self.dispatcher.load_backend()
        scene_events.watch(self.dispatcher.state_cache.mark_dirty)
        try:
            return self.server.start()
        except BaseException:
            scene_events.unwatch(self.dispatcher.state_cache.mark_dirty)
            raise

    def stop(self) -> None:
        scene_events.unwatch(self.dispatcher.state_cache.mark_dirty)
        self.main_thread.close()
        self.server.stop()

    def drain(self, timeout: float = 0.0) -> int:
        """Run queued commands on the calling (main) thread."""
        return self.main_thread.drain(timeout=timeout)

    def sessions_info(self) -> list[dict[str, Any]]:
        return self.server.sessions_info()

    def _sessions_info(self) -> list[dict[str, Any]]:
        return self.server.sessions_info()

    def _live_sessions(self) -> set[str]:
        return self.server.live_session_ids()

    def _is_running(self) -> bool:
        return self.server.running

    def _on_close(self, connection: SessionConnection) -> None:
        # Only the connection knew a generated session id: its namespace cannot be reached again.
        if not connection.session_id_from_client:
            self.commands.namespaces.forget(connection.session_id)
