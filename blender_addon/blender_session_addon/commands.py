"""The commands that touch Blender data; every method here runs on Blender's main thread.

`execute_code` runs caller code in a namespace kept per session id (`NamespaceStore`), so variables
survive between calls and across reconnects of the same session while sessions stay isolated from one
another. Its stdout is captured and returned like the stock addon does
(`{"executed": true, "result": "<stdout>"}`); anything raised — `SystemExit` and
`KeyboardInterrupt` included — becomes an error reply with the traceback, never a lost connection.
"""

from __future__ import annotations

import io
import linecache
import traceback
from contextlib import redirect_stdout
from typing import Any, Callable

import bpy

from . import scene, screenshot
from .dispatch import CommandContext, CommandError, Handler, NamespaceStore

_CODE_FILENAME = "<execute_code>"

# Handlers that only read the scene, so the cached `_state` summary stays valid across them (see
# `statecache`). Everything else marks it dirty: `execute_code` runs anything, and
# `get_viewport_screenshot` adds and removes a temporary camera and renders, so it is not listed.
# Add a command here only if it can never create, delete, rename, select or activate an object.
READ_ONLY_COMMANDS = frozenset({"get_scene_info", "get_object_info"})


def new_namespace() -> dict[str, Any]:
    """What a session's code starts with (the stock addon's namespace)."""
    return {"bpy": bpy}


class BlenderCommands:
    """The Blender side of the dispatcher (see `dispatch.BlenderBackend`)."""

    def __init__(self, live_sessions: Callable[[], set[str]], namespace_limit: int = 256) -> None:
        self.namespaces = NamespaceStore(new_namespace, live_sessions, namespace_limit)

    def handlers(self) -> dict[str, Handler]:
        return {
            "get_scene_info": self.get_scene_info,
            "get_object_info": self.get_object_info,
            "execute_code": self.execute_code,
            "get_viewport_screenshot": self.get_viewport_screenshot,
        }

    def scene_state(self) -> dict[str, Any]:
        return scene.scene_state()

    def read_only_commands(self) -> frozenset[str]:
        return READ_ONLY_COMMANDS

    def blender_version(self) -> str:
        return bpy.app.version_string

    def background(self) -> bool:
        return bool(bpy.app.background)

    # -- commands ---------------------------------------------------------------------------

    def get_scene_info(self) -> dict[str, Any]:
        return scene.scene_info()

    def get_object_info(self, name: str) -> dict[str, Any]:
        return scene.object_info(name)

    def get_viewport_screenshot(self, max_size: int = 800, filepath: Any = None, format: str = "png") -> dict[str, Any]:
        return screenshot.capture(max_size=max_size, filepath=filepath, format=format)

    def execute_code(self, code: str, context: CommandContext) -> dict[str, Any]:
        if not isinstance(code, str):
            raise ValueError("code must be a string")
        namespace = self.namespaces.get(context.session_id)
        output = io.StringIO()
        try:
            compiled = compile(code, _CODE_FILENAME, "exec")
            # Lets tracebacks quote the caller's lines.
            linecache.cache[_CODE_FILENAME] = (len(code), None, code.splitlines(True), _CODE_FILENAME)
            with redirect_stdout(output):
                exec(compiled, namespace)
        except BaseException as exc:  # noqa: BLE001 - SystemExit/KeyboardInterrupt included, on purpose
            raise CommandError(
                f"Code execution error: {_describe(exc)}",
                traceback=_format_traceback(exc),
                output=output.getvalue(),
            ) from None
        return {"executed": True, "result": output.getvalue()}


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, Exception) and text:
        return text  # the stock wording: "Code execution error: boom"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _format_traceback(exc: BaseException) -> str:
    # Skip the frame of execute_code itself: the caller's code is what matters.
    tb = exc.__traceback__
    if tb is not None and tb.tb_frame.f_code is BlenderCommands.execute_code.__code__ and tb.tb_next is not None:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))
