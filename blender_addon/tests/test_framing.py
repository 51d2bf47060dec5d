"""Framing and the socket layer, without Blender: the scanner fed directly, and the real server,
dispatcher and main-thread queue with a stand-in for the Blender side."""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
from typing import Any, Iterator

import pytest

from blender_session_addon.dispatch import CommandContext, CommandError, Dispatcher
from blender_session_addon.framing import Frame, FrameError, FrameScanner, FrameTooLarge, encode_reply
from blender_session_addon.mainthread import MainThreadQueue
from blender_session_addon.server import SessionServer
from blender_session_addon.session import new_session_id
from helpers import Client


def feed_all(scanner: FrameScanner, *chunks: bytes) -> list[Any]:
    out = []
    for chunk in chunks:
        out.extend(scanner.feed(chunk))
    return out


def values(results: list[Any]) -> list[Any]:
    return [r.value if isinstance(r, Frame) else r for r in results]


# -- the scanner ------------------------------------------------------------------------------


def test_bare_ndjson_and_pretty_printed_values_all_split() -> None:
    scanner = FrameScanner()
    data = b'{"type": "a"}{"type": "b"}\n{"type": "c"}\n{\n  "type": "d",\n  "params": {}\n}\n'
    assert values(feed_all(scanner, data)) == [{"type": t} for t in "abc"] + [{"type": "d", "params": {}}]


def test_values_split_at_every_offset_come_out_whole() -> None:
    data = b'{"type": "execute_code", "params": {"code": "print(\'\xc3\xb1 \xe6\x97\xa5\xf0\x9f\x98\x80 \\" {[\')"}}\n'
    data += b'[1, -2.5e3, NaN, Infinity, -Infinity, true, false, null, "x\\\\"]'
    expected = values(feed_all(FrameScanner(), data))
    assert len(expected) == 2 and "\u65e5" in expected[0]["params"]["code"]
    for cut in range(1, len(data)):
        got = values(feed_all(FrameScanner(), data[:cut], data[cut:]))
        assert repr(got) == repr(expected), cut


def test_utf8_character_split_byte_by_byte() -> None:
    data = json.dumps({"type": "x", "params": {"s": "\u00e9\u65e5\U0001F600"}}, ensure_ascii=False).encode("utf-8")
    scanner = FrameScanner()
    got = feed_all(scanner, *[data[i : i + 1] for i in range(len(data))])
    assert values(got) == [{"type": "x", "params": {"s": "\u00e9\u65e5\U0001F600"}}]


def test_python_nan_and_infinity_are_accepted() -> None:
    (frame,) = FrameScanner().feed(b'{"v": [NaN, Infinity, -Infinity]}')
    assert isinstance(frame, Frame)
    nan, inf, ninf = frame.value["v"]
    assert nan != nan and inf == float("inf") and ninf == float("-inf")


@pytest.mark.parametrize(
    "garbage",
    [
        b"not json at all\n",
        b'{"type": oops}\n',
        b'{"type": "ping",}\n',
        b'{"type": "pi\nng"}\n',
        b"}\n",
        b'{"a": 1]\n',
        b'{"a": "\xff"}\n',
    ],
)
def test_garbage_gets_an_error_and_the_next_line_is_read(garbage: bytes) -> None:
    results = FrameScanner().feed(garbage + b'{"type": "ping"}\n')
    assert isinstance(results[0], FrameError)
    assert isinstance(results[-1], Frame) and results[-1].value == {"type": "ping"}


def test_unterminated_request_is_abandoned_when_a_new_one_starts_a_line() -> None:
    results = FrameScanner().feed(b'{"type": "ping"\n{"type": "get_scene_info"}\n')
    assert [type(r) for r in results] == [FrameError, Frame]
    assert results[1].value == {"type": "get_scene_info"}


def test_large_request_in_small_reads_is_decoded_once() -> None:
    code = "x = 1\n" * 500_000 + "s = '\\\\\"'\n" * 50_000
    data = json.dumps({"type": "execute_code", "params": {"code": code}}).encode()
    assert len(data) > 3_000_000
    scanner = FrameScanner()
    started = time.monotonic()
    results = feed_all(scanner, *[data[i : i + 8192] for i in range(0, len(data), 8192)])
    elapsed = time.monotonic() - started
    assert values(results) == [{"type": "execute_code", "params": {"code": code}}]
    assert scanner.decode_calls == 1
    # A re-parse per read would be ~400 parses of up to 3.7 MB; linear scanning takes well under this.
    assert elapsed < 10.0


def test_frame_over_the_limit_is_reported_once() -> None:
    scanner = FrameScanner(max_frame_bytes=1000)
    results = feed_all(scanner, b'{"code": "' + b"x" * 600, b"x" * 600)
    assert [type(r) for r in results] == [FrameTooLarge]
    assert scanner.feed(b'"}{"type": "ping"}') == []


def test_replies_are_one_ascii_line() -> None:
    reply = encode_reply({"result": "\u00f1 \u65e5\nline", "nan": float("nan")})
    assert reply.endswith(b"\n") and reply.count(b"\n") == 1
    assert reply == (json.dumps({"result": "\u00f1 \u65e5\nline", "nan": float("nan")}) + "\n").encode("ascii")


def test_generated_session_ids_have_the_documented_shape() -> None:
    assert re.fullmatch(r"blender-\d{8}-\d{6}-[0-9a-f]{8}", new_session_id())


# -- the main-thread queue ---------------------------------------------------------------------------


def test_queued_work_runs_in_order_and_failures_reach_the_caller() -> None:
    queue = MainThreadQueue()
    ran: list[int] = []
    futures = [queue.submit(lambda i=i: ran.append(i) or i) for i in range(5)]
    failing = queue.submit(lambda: 1 / 0)
    assert queue.drain() == 6
    assert ran == [0, 1, 2, 3, 4] and [f.result() for f in futures] == ran
    with pytest.raises(ZeroDivisionError):
        failing.result()
    waiting = queue.submit(lambda: None)
    queue.close()
    with pytest.raises(RuntimeError):
        waiting.result(timeout=1)


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="POSIX signals")
def test_drain_returns_when_a_signal_handler_outlasts_its_timeout() -> None:
    # The headless runner blocks in drain() while SIGTERM may arrive; a wait that turns endless when
    # the handler runs past the deadline (queue.SimpleQueue on CPython 3.11) would never stop.
    def slow_handler(signum: int, frame: object) -> None:
        time.sleep(0.1)

    def give_up(signum: int, frame: object) -> None:
        raise TimeoutError("drain() did not return")

    previous = signal.signal(signal.SIGUSR1, slow_handler), signal.signal(signal.SIGALRM, give_up)
    main = threading.main_thread().ident
    assert main == threading.get_ident()
    timer = threading.Timer(0.02, signal.pthread_kill, (main, signal.SIGUSR1))
    try:
        signal.alarm(5)
        timer.start()
        started = time.monotonic()
        assert MainThreadQueue().drain(timeout=0.05) == 0
        assert time.monotonic() - started < 2
    finally:
        signal.alarm(0)
        timer.join()
        signal.signal(signal.SIGUSR1, previous[0])
        signal.signal(signal.SIGALRM, previous[1])


# -- the server, with a stand-in Blender --------------------------------------------------------


class FakeBlender:
    """The Blender side of the dispatcher, without Blender."""

    def __init__(self) -> None:
        self.objects = ["Cube"]
        self.release = threading.Event()

    def handlers(self) -> dict[str, Any]:
        return {"echo": self.echo, "add": self.add, "wait": self.wait, "whoami": self.whoami, "fail": self.fail}

    def scene_state(self) -> dict[str, Any]:
        return {"objects": list(self.objects), "selection": [], "active": None}

    def read_only_commands(self) -> set[str]:
        return {"echo", "whoami", "wait"}

    def blender_version(self) -> str:
        return "0.0.0"

    def background(self) -> bool:
        return True

    def echo(self, text: str = "") -> dict[str, Any]:
        return {"text": text}

    def add(self, name: str) -> dict[str, Any]:
        self.objects.append(name)
        return {"added": name}

    def wait(self) -> dict[str, Any]:
        self.release.wait(30)
        return {"waited": True}

    def whoami(self, context: CommandContext) -> dict[str, Any]:
        return {"session_id": context.session_id}

    def fail(self) -> None:
        raise CommandError("failed on purpose", traceback="...")


class Harness:
    def __init__(self, idle_timeout: float = 300.0, sweep_interval: float = 60.0) -> None:
        self.queue = MainThreadQueue()
        self.blender = FakeBlender()
        self.server: SessionServer
        self.dispatcher = Dispatcher(
            self.queue, self.blender, sessions_info=lambda: self.server.sessions_info(), is_running=lambda: self.server.running
        )
        self.dispatcher.load_backend()
        self.server = SessionServer(self.dispatcher, "127.0.0.1", 0, idle_timeout, sweep_interval)
        self.host, self.port = self.server.start()
        self._stop = threading.Event()
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()

    def _drain(self) -> None:  # plays Blender's main thread
        while not self._stop.is_set():
            self.queue.drain(timeout=0.05)

    def client(self) -> Client:
        return Client(self.port, timeout=30)

    def close(self) -> None:
        self.blender.release.set()
        self._stop.set()
        self.queue.close()
        self.server.stop()
        self._drainer.join(5)


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()


def test_pipelined_pair_in_one_send_is_answered_in_order(harness: Harness) -> None:
    with harness.client() as client:
        client.send_raw(b'{"type": "echo", "params": {"text": "first"}}{"type": "echo", "params": {"text": "second"}}')
        assert client.read_reply()["result"] == {"text": "first"}
        assert client.read_reply()["result"] == {"text": "second"}


def test_malformed_then_valid_on_the_same_connection(harness: Harness) -> None:
    with harness.client() as client:
        client.send_raw(b'{"type": "echo", oops}\n')
        error = client.read_reply()
        assert error["status"] == "error" and "Invalid JSON" in error["message"]
        client.send_raw(b'{"type": "echo", "params": {"text": "still here"}}\n')
        assert client.read_reply() == {"status": "success", "result": {"text": "still here"}}


def test_utf8_character_split_across_two_sends(harness: Harness) -> None:
    data = json.dumps({"type": "echo", "params": {"text": "\u65e5\u672c"}}, ensure_ascii=False).encode("utf-8")
    cut = data.index("\u65e5".encode("utf-8")) + 1
    with harness.client() as client:
        client.send_raw(data[:cut])
        time.sleep(0.05)  # let the first part arrive as its own read
        client.send_raw(data[cut:])
        assert client.read_reply()["result"] == {"text": "\u65e5\u672c"}


def test_unknown_command_and_bad_params_are_error_replies(harness: Harness) -> None:
    with harness.client() as client:
        assert client.call("no_such_command") == {"status": "error", "message": "Unknown command type: no_such_command"}
        reply = client.call("echo", {"text": "x", "bogus": 1})
        assert reply["status"] == "error" and "bogus" in reply["message"]
        client.send_raw(b'{"type": "echo", "params": [1]}')
        assert client.read_reply()["status"] == "error"
        client.send_raw(b"[1, 2]")
        assert client.read_reply() == {"status": "error", "message": "Invalid request: expected a JSON object"}
        reply = client.call("fail")
        assert reply == {"status": "error", "message": "failed on purpose", "traceback": "..."}
        assert client.call("echo", {"text": "ok"})["result"] == {"text": "ok"}


def test_session_id_comes_from_the_request_when_sent(harness: Harness) -> None:
    with harness.client() as client:
        generated = client.result("whoami")["session_id"]
        assert re.fullmatch(r"blender-\d{8}-\d{6}-[0-9a-f]{8}", generated)
        assert client.result("whoami", session_id="scene-20260106-101530-a1b2c3d4")["session_id"] == (
            "scene-20260106-101530-a1b2c3d4"
        )
        sessions = client.result("get_sessions_info")["sessions"]
        assert [s["session_id"] for s in sessions] == ["scene-20260106-101530-a1b2c3d4"]
        assert sessions[0]["command_count"] == 3  # this request included


def test_state_is_sent_first_then_only_when_changed(harness: Harness) -> None:
    with harness.client() as client:
        assert client.call("echo", _state=True)["_state"] == {"objects": ["Cube"], "selection": [], "active": None}
        assert "_state" not in client.call("echo", _state=True)
        assert "_state" not in client.call("ping", _state=True)
        assert client.call("add", {"name": "Sphere"}, _state=True)["_state"]["objects"] == ["Cube", "Sphere"]
        assert "_state" not in client.call("echo", _state=True)
        assert "_state" not in client.call("echo")
    with harness.client() as other:  # per connection: a new one gets the state on its first request
        assert other.call("echo", _state=True)["_state"]["objects"] == ["Cube", "Sphere"]


def test_ping_is_answered_while_the_main_thread_is_busy(harness: Harness) -> None:
    with harness.client() as busy, Client(harness.port, timeout=5) as probe:
        busy.send("wait")
        assert probe.call("ping")["result"]["pong"] is True
        sessions = probe.result("get_sessions_info")["sessions"]
        assert len(sessions) == 2 and any(s["busy"] for s in sessions)
        harness.blender.release.set()
        assert busy.read_reply()["result"] == {"waited": True}


def test_idle_connection_is_closed_by_the_sweep() -> None:
    h = Harness(idle_timeout=0.3, sweep_interval=0.05)
    try:
        with h.client() as idle:
            idle.call("ping")
            started = time.monotonic()
            assert idle.wait_closed(timeout=20), "idle connection was not closed"
            assert time.monotonic() - started >= 0.25
        # A busy connection is never idle, however long its command takes.
        with h.client() as active:
            active.send("wait")
            assert not active.wait_closed(timeout=0.8)
            h.blender.release.set()
            assert active.read_reply()["result"] == {"waited": True}
    finally:
        h.close()


def test_stop_closes_connections_and_frees_the_port(harness: Harness) -> None:
    client = harness.client()
    client.call("ping")
    harness.close()
    assert client.wait_closed(timeout=10)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", harness.port), timeout=5)
