"""The `_state` summary, computed only when the scene may have changed (no bpy).

The session manager asks for `_state` on every request, and computing it walks every object of the
scene. Between two requests the scene usually has not changed, so `SceneStateCache` keeps the last
summary and recomputes it only after `mark_dirty()`. Whatever may change the scene marks it dirty:

* the dispatcher, before and after every command that is not known to be read-only (Python API edits
  made by `execute_code` do not fire Blender's handlers in background mode);
* Blender's own change notifications (`scene_events`: depsgraph updates, undo, redo, file loads),
  which cover edits made by hand in the UI between commands.

Marking dirty is cheap and may be done too often; a summary reused after a change would be a bug. So
the rule is: when in doubt, mark dirty.

Dirtiness is a generation counter rather than a flag: `get()` records the generation it saw *before*
computing, so a `mark_dirty()` that lands while the summary is being computed (say, from another
thread) still forces the next `get()` to recompute; a flag cleared after computing would lose it.

The cached dict is returned as is, every time, to every caller: callers must not mutate it.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

_total_lock = threading.Lock()
_total_computations = 0


def total_computations() -> int:
    """How many summaries every cache in this process has computed (for tests and diagnostics)."""
    return _total_computations


class SceneStateCache:
    def __init__(self, compute: Callable[[], dict[str, Any]]) -> None:
        self._compute = compute
        self._generation = 0  # bumped by mark_dirty
        self._cached: Optional[dict[str, Any]] = None
        self._cached_generation = -1  # the generation _cached was computed at; -1: none yet
        self.computations = 0  # how many times `compute` was called

    def mark_dirty(self, *_args: Any) -> None:
        """The scene may have changed: the next `get()` recomputes. Accepts and ignores any arguments,
        so it can be handed to callbacks directly."""
        self._generation += 1

    def get(self) -> dict[str, Any]:
        """The summary, recomputed if the scene may have changed since it was last computed.

        An exception from `compute` propagates and leaves the cache dirty."""
        generation = self._generation
        if self._cached is not None and self._cached_generation == generation:
            return self._cached
        self.computations += 1
        _count_computation()
        state = self._compute()
        self._cached, self._cached_generation = state, generation
        return state


def _count_computation() -> None:
    global _total_computations
    with _total_lock:
        _total_computations += 1
