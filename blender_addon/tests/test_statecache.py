"""The cached `_state` summary, without Blender: `SceneStateCache` on its own, and the dispatcher with
a stand-in backend that counts how often the summary is computed."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Callable, Optional

import pytest

from blender_session_addon.dispatch import CommandError, Dispatcher
from blender_session_addon.session import SessionConnection
from blender_session_addon.statecache import SceneStateCache, total_computations

# -- the cache on its own ---------------------------------------------------------------------------


def test_cache_computes_once_until_marked_dirty() -> None:
    calls = []

    def compute() -> dict[str, Any]:
        calls.append(1)
        return {"n": len(calls)}

    cache = SceneStateCache(compute)
    before = total_computations()
    first = cache.get()
    assert cache.get() is first and cache.get() is first
    assert cache.computations == 1 and len(calls) == 1
    cache.mark_dirty()
    cache.mark_dirty("any", "handler", "arguments")
    assert cache.get() == {"n": 2}
    assert cache.get() == {"n": 2}
    assert cache.computations == 2 and total_computations() - before == 2


def test_a_change_reported_while_computing_is_not_lost() -> None:
    scene = {"objects": ["Cube"]}
    cache: SceneStateCache

    def compute() -> dict[str, Any]:
        seen = {"objects": list(scene["objects"])}
        # Another thread (a Blender handler) reports a change after the walk saw the scene.
        scene["objects"].append("Sphere")
        cache.mark_dirty()
        return seen

    cache = SceneStateCache(compute)
    assert cache.get() == {"objects": ["Cube"]}
    assert cache.get()["objects"] == ["Cube", "Sphere"]


def test_a_failing_computation_leaves_the_cache_dirty() -> None:
    outcomes: list[Any] = [RuntimeError("no scene"), {"objects": []}]

    def compute() -> dict[str, Any]:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    cache = SceneStateCache(compute)
    with pytest.raises(RuntimeError):
        cache.get()
    assert cache.get() == {"objects": []}
    assert cache.computations == 2


# -- the dispatcher with a counting backend ---------------------------------------------------------


class InlineQueue:
    """Plays the main-thread queue: runs the work right away on the calling thread."""

    def submit(self, work: Callable[[], Any]) -> "Future[Any]":
        future: "Future[Any]" = Future()
        try:
            future.set_result(work())
        except BaseException as exc:  # noqa: BLE001 - the dispatcher decides what to report
            future.set_exception(exc)
        return future


class CountingBlender:
    """A scene of names with a selection; counts `scene_state()` calls."""

    def __init__(self) -> None:
        self.objects = ["Cube", "Light", "Camera"]
        self.selection = ["Cube"]
        self.state_calls = 0

    def handlers(self) -> dict[str, Any]:
        return {
            "get_scene_info": self.get_scene_info,
            "get_object_info": self.get_object_info,
            "add": self.add,
            "select": self.select,
            "noop": self.noop,
            "add_then_fail": self.add_then_fail,
            "add_then_interrupt": self.add_then_interrupt,
        }

    def read_only_commands(self) -> frozenset[str]:
        return frozenset({"get_scene_info", "get_object_info"})

    def scene_state(self) -> dict[str, Any]:
        self.state_calls += 1
        return {"objects": list(self.objects), "selection": list(self.selection), "active": (self.selection or [None])[-1]}

    def blender_version(self) -> str:
        return "0.0.0"

    def background(self) -> bool:
        return True

    def get_scene_info(self) -> dict[str, Any]:
        return {"object_count": len(self.objects)}

    def get_object_info(self, name: str) -> dict[str, Any]:
        if name not in self.objects:
            raise ValueError(f"Object not found: {name}")
        return {"name": name}

    def add(self, name: str) -> dict[str, Any]:
        self.objects.append(name)
        return {"added": name}

    def select(self, name: str) -> dict[str, Any]:
        self.selection = [name]
        return {"selected": name}

    def noop(self) -> dict[str, Any]:
        return {}

    def add_then_fail(self, name: str) -> None:
        self.objects.append(name)
        raise CommandError("failed after adding")

    def add_then_interrupt(self, name: str) -> None:
        self.objects.append(name)
        raise KeyboardInterrupt


class Setup:
    def __init__(self) -> None:
        self.blender = CountingBlender()
        self.dispatcher = Dispatcher(InlineQueue(), self.blender, sessions_info=lambda: [], is_running=lambda: True)  # type: ignore[arg-type]
        self.dispatcher.load_backend()

    def connection(self) -> SessionConnection:
        return SessionConnection(None, ("127.0.0.1", 0), 1)  # type: ignore[arg-type] - the socket is never used here

    def call(self, connection: SessionConnection, command: str, params: Optional[dict[str, Any]] = None, state: bool = True) -> dict[str, Any]:
        request: dict[str, Any] = {"type": command, "params": params or {}}
        if state:
            request["_state"] = True
        return self.dispatcher(request, connection)


@pytest.fixture
def setup() -> Setup:
    return Setup()


def test_read_only_commands_back_to_back_compute_the_state_once(setup: Setup) -> None:
    connection = setup.connection()
    first = setup.call(connection, "get_scene_info")
    assert first == {
        "status": "success",
        "result": {"object_count": 3},
        "_state": {"objects": ["Cube", "Light", "Camera"], "selection": ["Cube"], "active": "Cube"},
    }
    for _ in range(5):
        assert "_state" not in setup.call(connection, "get_scene_info")
        assert "_state" not in setup.call(connection, "get_object_info", {"name": "Light"})
        assert "_state" not in setup.call(connection, "ping")  # answered off the main thread, state on it
        assert "_state" not in setup.call(connection, "get_addon_info")
        assert setup.call(connection, "no_such_command")["status"] == "error"
        assert setup.call(connection, "get_object_info", {"name": "Nope"})["status"] == "error"
        assert setup.call(connection, "get_object_info", {"bogus": 1})["status"] == "error"
    assert setup.blender.state_calls == 1


def test_a_mutating_command_forces_a_recompute(setup: Setup) -> None:
    connection = setup.connection()
    setup.call(connection, "get_scene_info")
    assert setup.blender.state_calls == 1

    added = setup.call(connection, "add", {"name": "Sphere"})
    assert added["_state"]["objects"] == ["Cube", "Light", "Camera", "Sphere"]
    assert setup.blender.state_calls == 2

    # Recomputed even when nothing changed; the reply then carries no _state, as before.
    assert "_state" not in setup.call(connection, "noop")
    assert setup.blender.state_calls == 3

    assert "_state" not in setup.call(connection, "get_scene_info")
    assert setup.blender.state_calls == 3


def test_a_mutating_command_without_state_still_invalidates(setup: Setup) -> None:
    connection = setup.connection()
    setup.call(connection, "get_scene_info")
    assert setup.call(connection, "select", {"name": "Light"}, state=False) == {"status": "success", "result": {"selected": "Light"}}
    assert setup.blender.state_calls == 1  # not asked for: not computed
    reply = setup.call(connection, "get_object_info", {"name": "Light"})
    assert reply["_state"] == {"objects": ["Cube", "Light", "Camera"], "selection": ["Light"], "active": "Light"}


@pytest.mark.parametrize("command", ["add_then_fail", "add_then_interrupt"])
def test_a_command_that_fails_after_changing_the_scene_invalidates(setup: Setup, command: str) -> None:
    connection = setup.connection()
    setup.call(connection, "get_scene_info")
    failed = setup.call(connection, command, {"name": "Half"}, state=False)
    assert failed["status"] == "error"
    reply = setup.call(connection, "get_scene_info")
    assert reply["_state"]["objects"] == ["Cube", "Light", "Camera", "Half"]


def test_a_change_notification_forces_a_recompute(setup: Setup) -> None:
    connection = setup.connection()
    setup.call(connection, "get_scene_info")
    setup.blender.objects.append("Edited by hand")  # what Blender's handlers report
    assert "_state" not in setup.call(connection, "get_scene_info")  # not told yet: the cached summary
    setup.dispatcher.state_cache.mark_dirty()
    assert setup.call(connection, "get_scene_info")["_state"]["objects"][-1] == "Edited by hand"
    assert setup.blender.state_calls == 2


def test_state_is_still_sent_first_on_each_connection(setup: Setup) -> None:
    first, second = setup.connection(), setup.connection()
    assert "_state" in setup.call(first, "get_scene_info")
    assert "_state" not in setup.call(first, "get_scene_info")
    # A new connection gets the (cached) summary on its first request, then only changes.
    assert setup.call(second, "get_object_info", {"name": "Cube"})["_state"]["objects"] == ["Cube", "Light", "Camera"]
    assert "_state" not in setup.call(second, "get_scene_info")
    assert setup.blender.state_calls == 1
    # A change made by one connection reaches both, each once.
    assert setup.call(first, "add", {"name": "Cone"})["_state"]["objects"][-1] == "Cone"
    assert setup.call(second, "get_scene_info")["_state"]["objects"][-1] == "Cone"
    assert "_state" not in setup.call(first, "get_scene_info")
    assert "_state" not in setup.call(second, "get_scene_info")
    assert setup.blender.state_calls == 2


def test_state_is_not_computed_when_not_asked_for(setup: Setup) -> None:
    connection = setup.connection()
    for command in ("get_scene_info", "noop", "ping"):
        assert "_state" not in setup.call(connection, command, state=False)
    assert setup.blender.state_calls == 0
