"""From a decoded request to a reply (no bpy): routing, params, `_state`, main-thread hand-off.

`Dispatcher` is the `execute` callable the server calls on a connection's thread. It

* answers commands that need no Blender data (`ping`, `get_addon_info`, `get_sessions_info`, the
  stock integrations' status probes) right there, so a health probe is answered even while Blender
  is busy rendering;
* sends every other command to the main thread through `MainThreadQueue` and waits for it;
* calls handlers as `handler(**params)` after checking the params against the handler's signature,
  so an unexpected param is an error reply naming it, never a crash;
* adds `"_state"` when the request asks for it and the scene state differs from the last one sent
  on this connection. The summary comes from a `SceneStateCache` (see `statecache`), which the
  dispatcher marks dirty before and after every Blender command not in the backend's
  `read_only_commands()`; the commands answered on the connection's thread never touch Blender.

The Blender side is anything with the `BlenderBackend` shape (see `commands.BlenderCommands`); tests
of the socket layer use a stand-in.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Collection, Optional, Protocol

from .mainthread import MainThreadQueue
from .session import SessionConnection
from .statecache import SceneStateCache
from .version import ADDON_NAME, ADDON_VERSION

log = logging.getLogger(__name__)

Handler = Callable[..., Any]

# Commands listed by get_addon_info besides the Blender ones.
PROTOCOL_CAPABILITIES = ("_state", "session_namespaces", "session_id", "inline_screenshot", "ndjson", "pipelining")


class CommandError(Exception):
    """A command failed in a way the caller should hear about; `extra` joins the error reply."""

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class BlenderBackend(Protocol):
    """What the dispatcher needs from the Blender side; every method runs on the main thread."""

    def handlers(self) -> dict[str, Handler]: ...

    def scene_state(self) -> dict[str, Any]: ...

    def read_only_commands(self) -> Collection[str]:
        """Handlers known to leave the scene as it was; every other one may change `scene_state()`."""
        ...

    def blender_version(self) -> str: ...

    def background(self) -> bool: ...


class CommandContext:
    """What a handler may learn about the request it serves (passed to handlers that ask for it)."""

    def __init__(self, connection: SessionConnection) -> None:
        self.connection = connection

    @property
    def session_id(self) -> str:
        return self.connection.session_id


class NamespaceStore:
    """`execute_code` globals per session id, kept across calls and reconnects of that session.

    Bounded: beyond `limit` namespaces the least recently used one whose session has no open
    connection is dropped. A namespace of a generated session id goes when its connection closes
    (nobody else can name that session).
    """

    def __init__(self, factory: Callable[[], dict[str, Any]], live_sessions: Callable[[], set[str]], limit: int = 256) -> None:
        self._factory = factory
        self._live_sessions = live_sessions
        self._limit = limit
        self._namespaces: "OrderedDict[str, dict[str, Any]]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session_id: str) -> dict[str, Any]:
        with self._lock:
            namespace = self._namespaces.get(session_id)
            if namespace is None:
                namespace = self._factory()
                self._namespaces[session_id] = namespace
            self._namespaces.move_to_end(session_id)
            if len(self._namespaces) > self._limit:
                live = self._live_sessions()
                for candidate in list(self._namespaces):
                    if len(self._namespaces) <= self._limit:
                        break
                    if candidate != session_id and candidate not in live:
                        del self._namespaces[candidate]
            return namespace

    def forget(self, session_id: str) -> None:
        with self._lock:
            self._namespaces.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._namespaces)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._namespaces


class Dispatcher:
    def __init__(
        self,
        main_thread: MainThreadQueue,
        backend: BlenderBackend,
        sessions_info: Callable[[], list[dict[str, Any]]],
        is_running: Callable[[], bool],
    ) -> None:
        self.main_thread = main_thread
        self.backend = backend
        self.state_cache = SceneStateCache(backend.scene_state)
        self._sessions_info = sessions_info
        self._is_running = is_running
        self._started_at = time.time()
        self._blender_version = "unknown"
        self._background = False
        self._main_handlers: dict[str, Handler] = {}
        self._read_only: frozenset[str] = frozenset()
        self._thread_handlers: dict[str, Handler] = {
            "ping": self.ping,
            "get_addon_info": self.get_addon_info,
            "get_sessions_info": self.get_sessions_info,
            # The stock integrations: stock clients probe these; answering "disabled" keeps them
            # from treating the addon as broken.
            "get_polyhaven_status": _integration_status("PolyHaven"),
            "get_hyper3d_status": _integration_status("Hyper3D Rodin"),
            "get_sketchfab_status": _integration_status("Sketchfab"),
            "get_hunyuan3d_status": _integration_status("Hunyuan3D"),
        }

    def load_backend(self) -> None:
        """Read what the thread-side handlers report about Blender; call on the main thread."""
        self._main_handlers = dict(self.backend.handlers())
        self._read_only = frozenset(self.backend.read_only_commands())
        self._blender_version = self.backend.blender_version()
        self._background = self.backend.background()

    # -- the server's execute callable --------------------------------------------------------

    def __call__(self, request: dict[str, Any], connection: SessionConnection) -> dict[str, Any]:
        context = CommandContext(connection)
        params = request.get("params")
        params = {} if params is None else params
        command_type = request.get("type")
        handler: Optional[Handler] = None
        reply: Optional[dict[str, Any]] = None

        if not isinstance(params, dict):
            reply = _error("Invalid request: params must be an object")
        elif isinstance(command_type, str) and command_type in self._thread_handlers:
            reply = _run_handler(self._thread_handlers[command_type], params, context)
        elif isinstance(command_type, str) and command_type in self._main_handlers:
            handler = self._main_handlers[command_type]  # runs on the main thread, below
        else:
            reply = _error(f"Unknown command type: {command_type}")

        want_state = request.get("_state") is True
        if handler is None and not want_state:
            assert reply is not None
            return reply
        may_change_scene = handler is not None and command_type not in self._read_only

        def on_main_thread() -> tuple[dict[str, Any], Optional[dict[str, Any]]]:
            if handler is None:
                result = reply
            elif may_change_scene:
                # After, even when the handler raises: what it did before failing still counts.
                # Before as well, which costs nothing: when in doubt, mark.
                self.state_cache.mark_dirty()
                try:
                    result = _run_handler(handler, params, context)
                finally:
                    self.state_cache.mark_dirty()
            else:
                result = _run_handler(handler, params, context)
            assert result is not None
            return result, self._scene_state() if want_state else None

        try:
            reply, state = self._wait(self.main_thread.submit(on_main_thread))
        except BaseException as exc:  # noqa: BLE001 - queue closed, or a signal hit the main thread
            return _error(str(exc) or type(exc).__name__)
        if state is not None and state != connection.last_state_sent:
            reply["_state"] = state
            connection.last_state_sent = state
        return reply

    def _scene_state(self) -> Optional[dict[str, Any]]:
        try:
            return self.state_cache.get()
        except Exception:  # noqa: BLE001 - a reply without _state beats no reply
            log.exception("reading the scene state failed")
            return None

    def _wait(self, future: "Future[Any]") -> Any:
        while True:
            try:
                return future.result(timeout=0.5)
            except FutureTimeout:
                if not self._is_running():
                    raise RuntimeError("Blender is shutting down") from None

    # -- commands answered on the connection's thread -----------------------------------------

    def ping(self) -> dict[str, Any]:
        return {"pong": True, "time": time.time()}

    def get_addon_info(self) -> dict[str, Any]:
        capabilities = sorted({*self._main_handlers, *self._thread_handlers, *PROTOCOL_CAPABILITIES})
        return {
            "name": ADDON_NAME,
            "addon_version": [int(part) for part in ADDON_VERSION.split(".")],
            "version": ADDON_VERSION,
            "blender_version": self._blender_version,
            "background": self._background,
            "capabilities": capabilities,
            "started_at": self._started_at,
        }

    def get_sessions_info(self) -> dict[str, Any]:
        sessions = self._sessions_info()
        return {"count": len(sessions), "sessions": sessions}


def _run_handler(handler: Handler, params: dict[str, Any], context: CommandContext) -> dict[str, Any]:
    """Call handler(**params) and wrap the outcome in the stock reply envelope."""
    if "context" in params:
        return _error("Invalid params: 'context' is reserved")
    kwargs = dict(params)
    signature = inspect.signature(handler)
    if "context" in signature.parameters:
        kwargs["context"] = context
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        return _error(f"Invalid params: {exc}")
    try:
        return {"status": "success", "result": handler(**kwargs)}
    except CommandError as exc:
        return {"status": "error", "message": exc.message, **exc.extra}
    except Exception as exc:  # noqa: BLE001 - every failure is a reply, never a dropped connection
        log.debug("handler %s failed", getattr(handler, "__name__", handler), exc_info=True)
        return _error(str(exc) or type(exc).__name__)


def _integration_status(name: str) -> Handler:
    def status() -> dict[str, Any]:
        return {"enabled": False, "message": f"{name} integration is not available in {ADDON_NAME}."}

    status.__name__ = f"get_{name.lower()}_status"
    return status


def _error(message: str) -> dict[str, Any]:
    return {"status": "error", "message": message}
