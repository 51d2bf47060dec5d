"""The UI front end: preferences, start/stop operators, a 3D View sidebar panel, the drain timer.

The running `SessionService` lives in `_runtime`, the one module-level variable here: Blender's
`register()`/`unregister()` hooks and operator classes are module-level, so the server they share
has to be reachable from there. One persistent `bpy.app.timers` timer (every 50 ms) runs queued
commands on the main thread and redraws the panel when the list of sessions changes.

No `from __future__ import annotations` here: Blender reads the property annotations of the
preferences class as live objects.
"""

import logging
import time
from typing import Any, Optional

import bpy
from bpy.props import BoolProperty, FloatProperty, IntProperty, StringProperty

from .app import SessionService
from .server import DEFAULT_HOST, DEFAULT_IDLE_TIMEOUT, DEFAULT_PORT, DEFAULT_SWEEP_INTERVAL

log = logging.getLogger(__name__)

TIMER_INTERVAL = 0.05
REDRAW_INTERVAL = 1.0  # idle times in the panel tick at least this often while sessions exist


class _Runtime:
    """The server started from the UI, and what the timer needs to keep the panel fresh."""

    def __init__(self) -> None:
        self.service: Optional[SessionService] = None
        self.address: Optional[tuple[str, int]] = None
        self.last_error: Optional[str] = None
        self._seen_changes = -1
        self._last_redraw = 0.0

    @property
    def running(self) -> bool:
        return self.service is not None

    def start(self, host: str, port: int, idle_timeout: float, sweep_interval: float) -> None:
        if self.service is not None:
            return
        service = SessionService(host=host, port=port, idle_timeout=idle_timeout, sweep_interval=sweep_interval)
        try:
            self.address = service.start()
        except OSError as exc:
            self.last_error = f"Cannot listen on {host}:{port}: {exc.strerror or exc}"
            raise
        self.service = service
        self.last_error = None
        if not bpy.app.timers.is_registered(_drain_timer):
            bpy.app.timers.register(_drain_timer, first_interval=TIMER_INTERVAL, persistent=True)
        _redraw_panels()

    def stop(self) -> None:
        service, self.service = self.service, None
        if bpy.app.timers.is_registered(_drain_timer):
            bpy.app.timers.unregister(_drain_timer)
        if service is not None:
            service.stop()
        self.address = None
        _redraw_panels()

    def tick(self) -> None:
        service = self.service
        if service is None:
            return
        service.drain()
        changes = service.server.changes
        now = time.monotonic()
        has_sessions = bool(service.server.sessions_info())
        if changes != self._seen_changes or (has_sessions and now - self._last_redraw >= REDRAW_INTERVAL):
            self._seen_changes = changes
            self._last_redraw = now
            _redraw_panels()


_runtime = _Runtime()


def _drain_timer() -> Optional[float]:
    try:
        _runtime.tick()
    except Exception:  # noqa: BLE001 - a dead timer would silently stop every command
        log.exception("running queued commands failed")
    return TIMER_INTERVAL if _runtime.running else None


def _redraw_panels() -> None:
    window_manager = getattr(bpy.context, "window_manager", None)
    for window in getattr(window_manager, "windows", []):
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def _preferences(context: Any) -> "BlenderSessionPreferences":
    return context.preferences.addons[__package__].preferences


class BlenderSessionPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    host: StringProperty(name="Host", default=DEFAULT_HOST, description="Address to listen on (keep 127.0.0.1 unless you mean it)")  # type: ignore[valid-type]
    port: IntProperty(name="Port", default=DEFAULT_PORT, min=1024, max=65535)  # type: ignore[valid-type]
    auto_start: BoolProperty(name="Start automatically", default=False, description="Start the server when Blender starts")  # type: ignore[valid-type]
    idle_timeout: FloatProperty(name="Idle timeout (s)", default=DEFAULT_IDLE_TIMEOUT, min=1.0)  # type: ignore[valid-type]
    sweep_interval: FloatProperty(name="Sweep interval (s)", default=DEFAULT_SWEEP_INTERVAL, min=0.1)  # type: ignore[valid-type]

    def draw(self, context: Any) -> None:
        layout = self.layout
        row = layout.row()
        row.prop(self, "host")
        row.prop(self, "port")
        layout.prop(self, "auto_start")
        row = layout.row()
        row.prop(self, "idle_timeout")
        row.prop(self, "sweep_interval")
        layout.label(text="execute_code runs any Python a client sends: listen on 127.0.0.1 only.", icon="ERROR")


class BLENDER_SESSION_OT_start(bpy.types.Operator):
    bl_idname = "blender_session.start_server"
    bl_label = "Start Server"
    bl_description = "Listen for session manager and MCP clients"

    def execute(self, context: Any) -> set[str]:
        prefs = _preferences(context)
        try:
            _runtime.start(prefs.host, prefs.port, prefs.idle_timeout, prefs.sweep_interval)
        except OSError:
            self.report({"ERROR"}, _runtime.last_error or "Cannot start the server")
            return {"CANCELLED"}
        host, port = _runtime.address or (prefs.host, prefs.port)
        self.report({"INFO"}, f"Session server listening on {host}:{port}")
        return {"FINISHED"}


class BLENDER_SESSION_OT_stop(bpy.types.Operator):
    bl_idname = "blender_session.stop_server"
    bl_label = "Stop Server"
    bl_description = "Close every connection and stop listening"

    def execute(self, context: Any) -> set[str]:
        _runtime.stop()
        self.report({"INFO"}, "Session server stopped")
        return {"FINISHED"}


class BLENDER_SESSION_PT_panel(bpy.types.Panel):
    bl_label = "Session Server"
    bl_idname = "BLENDER_SESSION_PT_panel"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Session"

    def draw(self, context: Any) -> None:
        layout = self.layout
        prefs = _preferences(context)
        column = layout.column()
        column.enabled = not _runtime.running
        column.prop(prefs, "host")
        column.prop(prefs, "port")
        layout.prop(prefs, "auto_start")
        if _runtime.running and _runtime.address is not None:
            host, port = _runtime.address
            layout.label(text=f"Listening on {host}:{port}", icon="LINKED")
            layout.operator(BLENDER_SESSION_OT_stop.bl_idname, icon="CANCEL")
        else:
            layout.label(text="Stopped", icon="UNLINKED")
            layout.operator(BLENDER_SESSION_OT_start.bl_idname, icon="PLAY")
        if _runtime.last_error:
            layout.label(text=_runtime.last_error, icon="ERROR")
        if _runtime.service is None:
            return
        sessions = _runtime.service.sessions_info()
        box = layout.box()
        box.label(text=f"Sessions: {len(sessions)}")
        for info in sessions:
            entry = box.column(align=True)
            entry.label(text=info["session_id"], icon="USER")
            entry.label(text=f"  {info['client']} · {info['command_count']} commands · idle {info['idle_seconds']:.0f}s")


_CLASSES = (
    BlenderSessionPreferences,
    BLENDER_SESSION_OT_start,
    BLENDER_SESSION_OT_stop,
    BLENDER_SESSION_PT_panel,
)


def _auto_start() -> None:
    try:
        prefs = _preferences(bpy.context)
        if prefs.auto_start and not _runtime.running:
            _runtime.start(prefs.host, prefs.port, prefs.idle_timeout, prefs.sweep_interval)
    except (OSError, KeyError) as exc:
        log.warning("auto-start failed: %s", exc)
    return None


def register() -> None:
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    # Under --background the headless runner owns the server; the UI timer would never run there.
    if not bpy.app.background:
        bpy.app.timers.register(_auto_start, first_interval=0.5)


def unregister() -> None:
    _runtime.stop()
    if bpy.app.timers.is_registered(_auto_start):
        bpy.app.timers.unregister(_auto_start)
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
