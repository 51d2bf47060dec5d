"""Blender Session Addon: a keep-alive, multi-session command server inside Blender.

Blender 4.2+ installs this package as an extension (see blender_manifest.toml); older Blender reads
`bl_info` and installs it as a legacy addon. The modules split as follows:

* no bpy, importable anywhere: `framing` (JSON frame scanner), `session` (`SessionConnection`),
  `server` (threads and sockets), `mainthread` (the queue into Blender's main thread), `dispatch`
  (routing, params, `_state`), `statecache` (the cached `_state` summary);
* main thread only: `commands`, `scene`, `screenshot`, `scene_events` (Blender's change handlers);
  `app` wires everything into a `SessionService`;
* front ends: `ui` (3D View sidebar panel, timer) here, and `headless.py` next to this package.

Importing the package does not import bpy; `register()` does.
"""

bl_info = {
    "name": "Blender Session Addon",
    "author": "Blender Session Manager project",
    "version": (0, 1, 0),
    "blender": (3, 6, 0),
    "location": "View3D > Sidebar > Session",
    "description": "Keep-alive multi-session command server for the Blender Session Manager and MCP clients",
    "warning": "execute_code runs arbitrary Python sent by clients",
    "category": "Interface",
}


def register() -> None:
    from . import ui

    ui.register()


def unregister() -> None:
    from . import ui

    ui.unregister()
