"""Three real headless Blenders behind one manager: placement across the backends, the
documented planned restart of one Blender (drain, pause, restart, resume: its callers only
wait) and an unplanned crash of one (its callers get a clear -32002/-32010 at once, the
others nothing; the probes mark it down, and its sessions work again once it is back)."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

from harness import Manager, Process, start_headless, start_manager_with

NAMES = ("a", "b", "c")
HEALTH_INTERVAL = 0.25
HEALTH_FAILURES = 2
CALL_TIMEOUT = 60.0  # a caller's socket timeout: far above any wait these tests expect
COMMAND_TIMEOUT = 30.0  # the manager's --command-timeout: a hang would surface as -32003


class Blenders:
    """Three headless Blenders on fixed ports; any one can be stopped and started again
    on the same port (the addon's listener sets SO_REUSEADDR)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: dict[str, Process] = {}
        self.ports: dict[str, int] = {}
        for name in NAMES:
            self.start(name)

    def start(self, name: str) -> None:
        proc, (_, port) = start_headless(self.ports.get(name, 0), self.folder / f"ready-{name}")
        self.procs[name] = proc
        self.ports.setdefault(name, port)
        assert port == self.ports[name]

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    def terminate(self, name: str) -> None:
        assert self.procs[name].stop() == 0, "\n".join(self.procs[name].lines)

    def kill(self, name: str) -> None:
        proc = self.procs[name].proc
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def running(self, name: str) -> bool:
        return self.procs[name].proc.poll() is None

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.stop()


@pytest.fixture(scope="module")
def blenders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Blenders]:
    bl = Blenders(tmp_path_factory.mktemp("three-blenders"))
    try:
        yield bl
    finally:
        bl.stop_all()


@pytest.fixture()
def mgr(blenders: Blenders, tmp_path: Path) -> Iterator[Manager]:
    for name in NAMES:  # a test that failed half-way may have left one stopped
        if not blenders.running(name):
            blenders.start(name)
    m = start_manager_with(
        [f"{name}={blenders.address(name)}" for name in NAMES],
        tmp_path / "manager.db",
        ["--health-interval", str(HEALTH_INTERVAL), "--health-timeout", "1",
         "--health-failures", str(HEALTH_FAILURES), "--command-timeout", str(COMMAND_TIMEOUT),
         "--connect-timeout", "2", "--sync-wait", str(CALL_TIMEOUT - 15)],
    )
    try:
        yield m
    finally:
        m.stop()


class RpcError(Exception):
    def __init__(self, error: dict) -> None:
        super().__init__(error)
        self.code = error.get("code")
        self.message = error.get("message")


class Client:
    """One JSON-RPC connection of its own (one per caller thread)."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.sock = socket.create_connection(addr, timeout=CALL_TIMEOUT)
        self.file = self.sock.makefile("rb")
        self.id = 0

    def call(self, method: str, **params):
        self.id += 1
        req = {"jsonrpc": "2.0", "id": self.id, "method": method, "params": params}
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        reply = json.loads(self.file.readline())
        assert reply["id"] == self.id
        if "error" in reply:
            raise RpcError(reply["error"])
        return reply["result"]

    def close(self) -> None:
        self.sock.close()


@dataclass
class Call:
    t0: float
    t1: float
    ok: bool
    code: int | None = None
    message: str = ""


@dataclass
class Caller:
    """Sends `execute_code` in a loop on one session and records every outcome."""

    session: str
    backend: str
    addr: tuple[str, int]
    stop: threading.Event
    calls: list[Call] = field(default_factory=list)
    busy: bool = False  # a call is out and not yet answered

    def run(self) -> None:
        client = Client(self.addr)
        n = 0
        try:
            while not self.stop.is_set():
                n += 1
                t0 = time.monotonic()
                self.busy = True
                try:
                    r = client.call("send_command", session_id=self.session, command_type="execute_code",
                                    params={"code": f"print({n})"}, wait=CALL_TIMEOUT - 15)
                except RpcError as e:
                    self.calls.append(Call(t0, time.monotonic(), False, e.code, e.message))
                    self.busy = False
                    time.sleep(0.02)  # a down backend answers at once: do not spin
                    continue
                except OSError as e:  # socket timeout: the manager never answered
                    self.calls.append(Call(t0, time.monotonic(), False, None, f"no answer: {e!r}"))
                    return
                good = r.get("status") == "success" and r["result"]["result"] == f"{n}\n"
                self.calls.append(Call(t0, time.monotonic(), good, None, "" if good else json.dumps(r)))
                self.busy = False
        finally:
            client.close()

    def successes(self, after: float = float("-inf"), before: float = float("inf")) -> int:
        return sum(1 for c in list(self.calls) if c.ok and after < c.t1 < before)

    def failures(self) -> list[Call]:
        return [c for c in list(self.calls) if not c.ok]


def wait_until(what: str, cond: Callable[[], object], timeout: float, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(step)


def backend_status(m: Manager, name: str) -> dict:
    (entry,) = [b for b in m.call("get_manager_status")["backends"] if b["name"] == name]
    return entry


def place_six(m: Manager, blenders: Blenders) -> dict[str, list[str]]:
    """Six sessions without a backend named; returns them by backend name."""
    placed: dict[str, list[str]] = {name: [] for name in NAMES}
    for _ in range(6):
        info = m.call("create_session")
        assert info["blender"]["connected"] is True, info
        info = m.call("get_session_info", session_id=info["session_id"])
        name = info["backend"]  # the backend's name (its address when it has none)
        assert f"{info['blender']['host']}:{info['blender']['port']}" == blenders.address(name), info
        placed[name].append(info["session_id"])
    assert {name: len(s) for name, s in placed.items()} == {"a": 2, "b": 2, "c": 2}, placed
    return placed


def b_and_others(callers: list[Caller]) -> tuple[list[Caller], list[Caller]]:
    """The callers of backend b (the one restarted), and the rest."""
    return [c for c in callers if c.backend == "b"], [c for c in callers if c.backend != "b"]


def start_callers(m: Manager, placed: dict[str, list[str]]) -> tuple[list[Caller], threading.Event, list[threading.Thread]]:
    stop = threading.Event()
    callers = [Caller(sid, name, m.rpc_addr, stop) for name in NAMES for sid in placed[name]]
    threads = [threading.Thread(target=c.run, daemon=True) for c in callers]
    for t in threads:
        t.start()
    wait_until("every caller has 3 successes", lambda: all(c.successes() >= 3 for c in callers), 30)
    return callers, stop, threads


def stop_callers(stop: threading.Event, threads: list[threading.Thread]) -> None:
    stop.set()
    for t in threads:
        t.join(CALL_TIMEOUT + 5)
        assert not t.is_alive(), "a caller is stuck in a call"


def describe(callers: list[Caller]) -> str:
    """Per caller: successes, and failures by code with the first message of each."""
    lines = []
    for c in callers:
        by_code: dict[int | None, list[str]] = {}
        for f in c.failures():
            by_code.setdefault(f.code, []).append(f.message)
        failed = {code: f"{len(msgs)}x, first: {msgs[0]}" for code, msgs in by_code.items()}
        lines.append(f"{c.backend} {c.session}: {c.successes()} ok, failures {failed}")
    return "\n".join(lines)


def test_placement_spreads_sessions_and_honours_a_named_backend(mgr: Manager, blenders: Blenders) -> None:
    placed = place_six(mgr, blenders)
    status = mgr.call("get_manager_status")
    assert [(b["name"], b["address"], b["state"], b["sessions"]) for b in status["backends"]] == [
        (name, blenders.address(name), "up", 2) for name in NAMES
    ]

    named = mgr.call("create_session", backend="b")
    assert named["backend"] == "b" and named["blender"]["port"] == blenders.ports["b"], named
    assert mgr.call("get_session_info", session_id=named["session_id"])["backend"] == "b"
    assert backend_status(mgr, "b")["sessions"] == 3
    # Each session really runs on its own Blender: the process ids differ by backend.
    pids = {}
    for name, sids in placed.items():
        for sid in sids:
            r = mgr.call("send_command", session_id=sid, command_type="execute_code",
                         params={"code": "import os\nprint(os.getpid())"})
            assert r["status"] == "success", r
            pids.setdefault(name, set()).add(int(r["result"]["result"]))
    assert pids == {name: {blenders.procs[name].proc.pid} for name in NAMES}

    with pytest.raises(RuntimeError) as e:
        mgr.call("create_session", backend="nope")
    assert e.value.args[0]["code"] == -32602 and "unknown backend" in e.value.args[0]["message"]


def test_planned_restart_of_one_blender_only_makes_its_callers_wait(mgr: Manager, blenders: Blenders) -> None:
    placed = place_six(mgr, blenders)
    callers, stop, threads = start_callers(mgr, placed)
    b_callers, others = b_and_others(callers)
    try:
        # The documented procedure: drain, pause, restart, resume, undrain.
        assert backend_status(mgr, "b")["state"] == "up"
        assert mgr.call("drain_backend", backend="b")["draining"] is True
        assert mgr.call("pause", backend="b") == {"paused": True, "backend": "b", "changed": True}
        paused_at = time.monotonic()
        # The command b was running finishes; what the b callers send now waits in their
        # sessions' queues: nothing of b's is in flight, every b caller waits on a call.
        wait_until("nothing in flight on b, every b caller waiting",
                   lambda: backend_status(mgr, "b")["in_flight"] == 0 and all(c.busy for c in b_callers), 10)

        blenders.terminate("b")
        down_at = time.monotonic()
        blenders.start("b")  # same port
        up_at = time.monotonic()
        # a and c were not held while b was away.
        for c in others:
            assert c.successes(after=paused_at, before=up_at) >= 3, describe(callers)
        # Nothing of b's completed while its Blender was stopped.
        for c in b_callers:
            assert c.successes(after=down_at, before=up_at) == 0, describe(callers)
        assert mgr.call("resume", backend="b") == {"paused": False, "backend": "b", "changed": True}
        resumed_at = time.monotonic()
        wait_until("every b caller succeeds 3 more times after the resume",
                   lambda: all(c.successes(after=resumed_at) >= 3 for c in b_callers), 30)
        assert mgr.call("drain_backend", backend="b", drain=False)["draining"] is False
    finally:
        stop_callers(stop, threads)

    longest_b = max(x.t1 - x.t0 for c in b_callers for x in c.calls)
    print(f"b paused {resumed_at - paused_at:.2f}s (Blender b away {up_at - down_at:.2f}s); "
          f"longest b call {longest_b:.2f}s;\n" + describe(callers))
    # Not one failure anywhere: the b callers only waited.
    assert all(not c.failures() for c in callers), describe(callers)
    # The command each b caller sent during the pause was held over the restart and then ran.
    for c in b_callers:
        assert any(x.ok and x.t0 < down_at and x.t1 > resumed_at for x in c.calls), describe(callers)
    # b's sessions are still pinned to b and it is up, taking new sessions again.
    status = backend_status(mgr, "b")
    assert (status["state"], status["paused"], status["draining"], status["sessions"]) == ("up", False, False, 2)
    info = mgr.call("create_session", backend="b")
    assert info["blender"]["connected"] is True


def test_a_crashed_blender_fails_its_callers_clearly_and_recovers(mgr: Manager, blenders: Blenders) -> None:
    placed = place_six(mgr, blenders)
    callers, stop, threads = start_callers(mgr, placed)
    b_callers, others = b_and_others(callers)
    try:
        blenders.kill("b")
        killed_at = time.monotonic()
        wait_until("b is marked down", lambda: backend_status(mgr, "b")["state"] == "down",
                   HEALTH_INTERVAL * (HEALTH_FAILURES + 4) + 2)
        down_after = time.monotonic() - killed_at
        status = backend_status(mgr, "b")
        assert status["probe_failures"] >= HEALTH_FAILURES and status["last_error"], status
        # While b is down its callers are refused at once, naming the down backend.
        wait_until("every b caller was told b is down",
                   lambda: all(any(f.code == -32002 and "is down" in f.message for f in c.failures())
                               for c in b_callers), 10)
        # New sessions avoid b while it is down.
        assert mgr.call("create_session")["backend"] != "b"

        blenders.start("b")  # same port
        restarted_at = time.monotonic()
        wait_until("b is up again", lambda: backend_status(mgr, "b")["state"] == "up", 10)
        up_after = time.monotonic() - restarted_at
        wait_until("every b caller succeeds 3 times after the restart",
                   lambda: all(c.successes(after=restarted_at) >= 3 for c in b_callers), 15)
        for c in others:
            assert c.successes(after=killed_at, before=restarted_at) >= 3, describe(callers)
    finally:
        stop_callers(stop, threads)

    print(f"b marked down {down_after:.2f}s after SIGKILL, up {up_after:.2f}s after its restart;\n"
          + describe(callers))
    assert all(not c.failures() for c in others), describe(callers)
    for c in b_callers:
        assert c.failures(), describe(callers)
        bad = [f for f in c.failures() if f.code not in (-32002, -32010)]
        assert not bad, describe(callers)
        slow = [f for f in c.failures() if f.t1 - f.t0 > 5]
        assert not slow, [(f.t1 - f.t0, f.code, f.message) for f in slow]
    assert all(max(x.t1 - x.t0 for x in c.calls) < COMMAND_TIMEOUT for c in callers)


def test_commands_held_by_a_pause_run_over_fresh_sockets_after_the_restart(mgr: Manager, blenders: Blenders) -> None:
    """The planned restart, step by step: b's sessions are idle when it is paused, each then
    gets a command (held), Blender b restarts, and at `resume` both commands must run on the
    new Blender."""
    placed = place_six(mgr, blenders)
    b_sessions = placed["b"]
    assert mgr.call("pause", backend="b")["changed"] is True
    results: dict[str, object] = {}

    def send(sid: str) -> None:
        client = Client(mgr.rpc_addr)
        try:
            results[sid] = client.call("send_command", session_id=sid, command_type="execute_code",
                                       params={"code": "import os\nprint(os.getpid())"}, wait=CALL_TIMEOUT - 15)
        except RpcError as e:
            results[sid] = (e.code, e.message)
        finally:
            client.close()

    threads = [threading.Thread(target=send, args=(sid,), daemon=True) for sid in b_sessions]
    for t in threads:
        t.start()
    wait_until("both commands are held in their sessions' queues",
               lambda: all(mgr.call("get_session_info", session_id=sid)["queued"] == 1 for sid in b_sessions), 10)
    blenders.terminate("b")
    blenders.start("b")
    assert mgr.call("resume", backend="b")["changed"] is True
    for t in threads:
        t.join(CALL_TIMEOUT)
        assert not t.is_alive(), "a held command was never answered"
    pid = str(blenders.procs["b"].proc.pid)
    assert results == {sid: {**results[sid], "status": "success", "result": {"executed": True, "result": pid + "\n"}}
                       if isinstance(results[sid], dict) else None for sid in b_sessions}, results
