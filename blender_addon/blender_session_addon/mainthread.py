"""Hand work from socket threads to Blender's main thread (no bpy).

Blender's data may only be touched from its main thread. Socket threads therefore never call bpy:
they `submit` a callable and wait on the returned `Future`. The main thread runs queued callables by
calling `drain` — from one persistent `bpy.app.timers` timer every 50 ms in the UI, or from the
headless runner's main loop, which blocks in `drain(timeout=...)` between commands.

Work runs strictly in submission order, one item at a time, so commands of different connections
never interleave inside Blender.

`queue.Queue`, not `queue.SimpleQueue`: the main thread blocks here while SIGTERM/SIGINT may arrive,
and CPython 3.11's `SimpleQueue.get(timeout=...)` can wait forever when a signal handler runs past
the deadline (the remaining time turns negative, which means "no timeout"). `Queue` waits on a
`threading.Condition`, whose timed wait handles that case.
"""

from __future__ import annotations

import queue
import time
from concurrent.futures import Future
from typing import Callable, Optional, TypeVar

T = TypeVar("T")


class QueueClosed(RuntimeError):
    """The main-thread queue was shut down; no more work will run."""


class MainThreadQueue:
    def __init__(self) -> None:
        self._items: "queue.Queue[Optional[tuple[Callable[[], object], Future]]]" = queue.Queue()
        self._closed = False

    def submit(self, work: Callable[[], T]) -> "Future[T]":
        """Queue `work` for the main thread; the future resolves with its result or exception."""
        future: "Future[T]" = Future()
        if self._closed:
            future.set_exception(QueueClosed("Blender is shutting down"))
            return future
        self._items.put((work, future))
        return future

    def drain(self, timeout: float = 0.0, budget: float = 0.2) -> int:
        """Run queued work on the calling (main) thread; return how many items ran.

        Waits up to `timeout` seconds for the first item, then keeps running items that are already
        queued until the queue is empty or `budget` seconds have passed (so the UI stays responsive
        when many commands arrive at once).
        """
        ran = 0
        deadline: Optional[float] = None
        block = timeout > 0
        while True:
            try:
                item = self._items.get(block=block, timeout=timeout if block else None)
            except queue.Empty:
                return ran
            if item is None:  # a wake-up from close()
                return ran
            work, future = item
            block = False
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(work())
                except BaseException as exc:  # noqa: BLE001 - the caller decides what to report
                    future.set_exception(exc)
            ran += 1
            if deadline is None:
                deadline = time.monotonic() + budget
            elif time.monotonic() >= deadline:
                return ran

    def close(self) -> None:
        """Refuse new work and fail everything still queued (threads waiting on it wake up)."""
        self._closed = True
        self._items.put(None)
        while True:
            try:
                item = self._items.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                _, future = item
                if future.set_running_or_notify_cancel():
                    future.set_exception(QueueClosed("Blender is shutting down"))
