"""Blender's change notifications, passed on to whoever watches the scene (main thread only).

`watch(callback)` calls `callback()` whenever Blender reports that the scene may have changed:
`depsgraph_update_post` (edits by hand in the UI, operators, Python API edits once the depsgraph is
evaluated), `undo_post`, `redo_post`, `load_post` and `load_factory_startup_post`. The `_state`
cache (`statecache`) uses it to learn about changes made between commands.

One set of handler functions is registered with `bpy.app.handlers` while at least one callback
watches, and removed with the last `unwatch`. They are `@persistent`, so opening a file does not
remove them (a file load is exactly what they must report). They never raise: a failing callback is
logged and the others still run.

In background mode, Python API edits (`obj.select_set()`, `bpy.data.objects.remove()`, ...) fire no
handler until something evaluates the depsgraph (`view_layer.update()`, an operator); commands that
may edit the scene therefore mark the cache dirty themselves (see `dispatch`).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import bpy
from bpy.app.handlers import persistent

log = logging.getLogger(__name__)

HANDLER_LISTS = ("depsgraph_update_post", "undo_post", "redo_post", "load_post", "load_factory_startup_post")

_callbacks: list[Callable[[], Any]] = []


@persistent
def _scene_changed(*_args: Any) -> None:
    for callback in list(_callbacks):
        try:
            callback()
        except Exception:  # noqa: BLE001 - a handler that raises would be reported on every update
            log.exception("scene change callback failed")


def watch(callback: Callable[[], Any]) -> None:
    """Call `callback()` (no arguments) on every change notification until `unwatch(callback)`."""
    if callback not in _callbacks:
        _callbacks.append(callback)
    _install()


def unwatch(callback: Callable[[], Any]) -> None:
    if callback in _callbacks:
        _callbacks.remove(callback)
    if not _callbacks:
        _uninstall()


def _ours(handler: Any) -> bool:
    # Also matches a copy left behind by an earlier import of this module (an addon reload).
    return getattr(handler, "__module__", None) == __name__ and getattr(handler, "__name__", None) == _scene_changed.__name__


def _install() -> None:
    for name in HANDLER_LISTS:
        handlers = getattr(bpy.app.handlers, name, None)
        if handlers is None:  # an older Blender without this list
            continue
        for stale in [h for h in handlers if _ours(h) and h is not _scene_changed]:
            handlers.remove(stale)
        if _scene_changed not in handlers:
            handlers.append(_scene_changed)


def _uninstall() -> None:
    for name in HANDLER_LISTS:
        handlers = getattr(bpy.app.handlers, name, None)
        if handlers is None:
            continue
        for handler in [h for h in handlers if _ours(h)]:
            handlers.remove(handler)
