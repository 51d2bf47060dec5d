"""scripts/session_manager_client.py against the real manager in front of real Blender: the seed's
SessionManager API end to end, the hand-over to a job and the long poll behind send_command, job
methods, error mapping, connection handling and tokens, and the command-line use."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from typing import Iterator

import pytest

from harness import REPO, Manager, Process, manager_binary

sys.path.insert(0, str(REPO / "scripts"))
from session_manager_client import SessionManagerClient, SessionManagerError  # noqa: E402

SESSION_RE = re.compile(r"^scene-\d{8}-\d{6}-[0-9a-f]{8}$")
CLIENT = REPO / "scripts" / "session_manager_client.py"


@pytest.fixture()
def client(manager: Manager) -> Iterator[SessionManagerClient]:
    host, port = manager.rpc_addr
    c = SessionManagerClient(host, port, timeout=60)
    try:
        yield c
    finally:
        c.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def remove_object(client: SessionManagerClient, sid: str, name: str) -> None:
    client.send_command(sid, "execute_code", {
        "code": f"import bpy\nob = bpy.data.objects.get({name!r})\nif ob: bpy.data.objects.remove(ob)"})


def test_seed_api_end_to_end(client: SessionManagerClient) -> None:
    sid = client.create_session()
    assert isinstance(sid, str) and SESSION_RE.match(sid)

    code = ("import bpy\nbpy.ops.mesh.primitive_cube_add(location=(0, 0, 3))\n"
            "bpy.context.active_object.name = 'ClientCube'\nprint(bpy.context.active_object.name)")
    r = client.send_command(sid, "execute_code", {"code": code})
    assert r["status"] == "success", r
    assert r["result"] == {"executed": True, "result": "ClientCube\n"}
    assert r["job_id"].startswith("job-") and r["seq"] == 1 and r["duration"] >= 0

    info = client.get_session_info(sid)
    assert info["session_id"] == sid
    assert info["blender"]["connected"] is True
    assert "ClientCube" in info["state"]["objects"]
    assert info["state"]["selection"] == "ClientCube"
    assert info["state"]["last_command"] == "execute_code"
    assert info["command_count"] == 1

    # update_state(**kwargs) merges: custom keys join, the scene's keys stay.
    state = client.update_state(sid, task="build a house", step=2)
    assert state["task"] == "build a house" and state["step"] == 2
    assert "ClientCube" in state["objects"]
    state = client.update_state(sid, step=3)
    assert state["task"] == "build a house" and state["step"] == 3
    assert client.get_session_info(sid)["state"]["step"] == 3

    # A Blender error reply is a normal result, not an exception.
    r = client.send_command(sid, "get_object_info", {"name": "NoSuchObject"})
    assert r["status"] == "error" and "NoSuchObject" in r["message"]

    hist = client.get_session_history(sid)
    assert isinstance(hist, list)
    assert [e["command"] for e in hist] == ["execute_code", "get_object_info"]
    assert [e["status"] for e in hist] == ["success", "error"]
    assert hist[0]["params"] == {"code": code}
    assert client.get_session_history(sid, limit=1)[0]["command"] == "get_object_info"
    assert [e["seq"] for e in client.get_session_history(sid, since_seq=hist[0]["seq"])] == [hist[1]["seq"]]

    sessions = client.list_sessions()
    assert isinstance(sessions, list) and sid in [s["session_id"] for s in sessions]

    # A tool call without a session creates one; with one, it reuses it.
    t = client.handle_tool_call("get_scene_info", {})
    sid2 = t["session_id"]
    assert SESSION_RE.match(sid2) and sid2 != sid
    assert t["result"]["status"] == "success"
    assert "ClientCube" in {o["name"] for o in t["result"]["result"]["objects"]}
    t = client.handle_tool_call("get_object_info", {"object_name": "ClientCube"}, session_id=sid)
    assert t["session_id"] == sid and t["result"]["result"]["name"] == "ClientCube"
    assert len(client.list_tools()) >= 4

    remove_object(client, sid, "ClientCube")
    assert client.close_session(sid) is True
    assert client.close_session(sid) is False  # already closed
    closed = client.cleanup_idle_sessions(timeout=0)
    assert closed == [sid2]
    assert client.list_sessions() == []
    # History outlives the session.
    assert len(client.get_session_history(sid)) == 4


def test_pending_send_command_is_followed_to_its_result(client: SessionManagerClient) -> None:
    sid = client.create_session()
    slow = "import time\ntime.sleep(1.0)\nprint('baked')"
    t0 = time.monotonic()
    r = client.send_command(sid, "execute_code", {"code": slow}, wait=0.01)
    assert time.monotonic() - t0 >= 0.9
    assert r["status"] == "success", r
    assert r["result"] == {"executed": True, "result": "baked\n"}
    assert r["job_id"].startswith("job-")
    assert client.get_job(r["job_id"])["status"] == "completed"

    # A Blender error after the hand-over comes back the same way as before it.
    r = client.send_command(sid, "execute_code", {"code": "import time\ntime.sleep(0.5)\nraise ValueError('late')"},
                            wait=0.01)
    assert r["status"] == "error" and "late" in r["message"], r

    # follow=False hands the pending reply over as it is.
    r = client.send_command(sid, "execute_code", {"code": slow}, wait=0.01, follow=False)
    assert r["status"] == "pending" and r["job_id"]
    assert client.wait_for_job(r["job_id"])["result"]["result"] == "baked\n"


def test_jobs_submit_poll_cancel_and_batch(client: SessionManagerClient) -> None:
    sid = client.create_session()
    slow = client.submit_job(sid, "execute_code", {"code": "import time\ntime.sleep(1.0)\nprint('slow')"},
                             metadata={"task": "props"})
    assert slow["status"] == "pending" and slow["job_id"].startswith("job-")
    queued = client.submit_job(sid, "execute_code", {"code": "print('never runs')"})
    rec = client.get_job(queued["job_id"])
    assert rec["status"] == "pending" and rec["position"] == 1 and rec["session_id"] == sid
    assert client.get_job(slow["job_id"])["metadata"] == {"task": "props"}
    assert {j["id"] for j in client.list_jobs(session_id=sid)} == {slow["job_id"], queued["job_id"]}

    cancelled = client.cancel_job(queued["job_id"])
    assert cancelled["status"] == "cancelled" and cancelled["cancel"] == "removed"

    done = client.get_job_result(slow["job_id"], wait=30)
    assert done["status"] == "completed"
    assert done["result"] == {"status": "success", "result": {"executed": True, "result": "slow\n"}}
    assert client.cancel_job(slow["job_id"])["cancel"] == "finished"

    batch = client.submit_batch(sid, [("execute_code", {"code": "print(1)"}),
                                      {"command_type": "get_object_info", "params": {"name": "Camera"}}])
    res = client.get_job_result(batch["job_id"], wait=30)
    assert res["status"] == "completed" and len(res["results"]) == 2
    assert res["results"][1]["result"]["name"] == "Camera"

    q = client.get_queue_status()
    assert q["completed"] >= 2 and q["cancelled"] >= 1 and "capacity" in q
    assert [j["id"] for j in client.list_jobs(session_id=sid, status="cancelled")] == [queued["job_id"]]
    status = client.get_manager_status()
    assert status["backends"][0]["state"] == "up" and "version" in status


def test_a_job_cancelled_while_send_command_follows_it(manager: Manager, client: SessionManagerClient) -> None:
    sid = client.create_session()
    blocker = client.submit_job(sid, "execute_code", {"code": "import time\ntime.sleep(1.5)"})
    out: dict = {}

    def follow() -> None:
        with SessionManagerClient(*manager.rpc_addr, timeout=60) as other:
            out["r"] = other.send_command(sid, "execute_code", {"code": "print('too late')"}, wait=0.01)

    t = threading.Thread(target=follow)
    t.start()
    deadline = time.monotonic() + 10
    pending = []
    while not pending and time.monotonic() < deadline:
        pending = client.list_jobs(session_id=sid, status="pending")
        time.sleep(0.05)
    assert pending, "the followed job never showed up"
    client.cancel_job(pending[0]["id"])
    t.join(30)
    assert out["r"] == {"status": "cancelled", "message": "cancelled by the caller", "job_id": pending[0]["id"]}
    client.get_job_result(blocker["job_id"], wait=30)


def test_errors_map_to_session_manager_error(client: SessionManagerClient) -> None:
    with pytest.raises(SessionManagerError) as e:
        client.get_session_info("scene-20260106-101530-a1b2c3d4")
    assert e.value.code == -32001 and e.value.kind == "session_not_found"
    assert e.value.message == "Session not found: scene-20260106-101530-a1b2c3d4"
    assert e.value.data["session_id"] == "scene-20260106-101530-a1b2c3d4"

    with pytest.raises(SessionManagerError) as e:
        client.send_command("scene-20260106-101530-a1b2c3d4", "get_scene_info")
    assert e.value.code == -32001

    with pytest.raises(SessionManagerError) as e:
        client.get_job("job-20260106-101530-a1b2c3d4")
    assert (e.value.code, e.value.kind) == (-32005, "job_not_found")

    with pytest.raises(SessionManagerError) as e:
        client.handle_tool_call("no_such_tool", {})
    assert (e.value.code, e.value.kind) == (-32602, "invalid_params")

    with pytest.raises(SessionManagerError) as e:
        client.call("no_such_method")
    assert (e.value.code, e.value.kind) == (-32601, "method_not_found")

    # The connection stays usable after errors.
    assert isinstance(client.list_sessions(), list)


def test_unreachable_manager_is_a_connection_error() -> None:
    port = free_port()
    c = SessionManagerClient("127.0.0.1", port, timeout=5)
    with pytest.raises(SessionManagerError) as e:
        c.list_sessions()
    assert e.value.kind == "connection_error" and e.value.code is None
    assert f"127.0.0.1:{port}" in e.value.message and "cannot connect" in e.value.message


class OneShotServer:
    """An NDJSON server whose first connection reads one request and hangs up without a reply;
    later connections answer every request. Counts the requests it received."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list = []
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn, self.connections), daemon=True).start()

    def _handle(self, conn: socket.socket, n: int) -> None:
        with conn, conn.makefile("rb") as f:
            for line in f:
                req = json.loads(line)
                self.requests.append(req)
                if n == 1:
                    return
                conn.sendall(json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": []}).encode() + b"\n")


def test_a_broken_connection_is_not_retried_but_the_next_call_reconnects() -> None:
    server = OneShotServer()
    c = SessionManagerClient("127.0.0.1", server.port, timeout=5)
    with pytest.raises(SessionManagerError) as e:
        c.send_command("scene-20260106-101530-a1b2c3d4", "execute_code", {"code": "print(1)"})
    assert e.value.kind == "connection_error" and "send_command" in e.value.message
    # The command may have reached the manager: it was sent exactly once.
    assert [r["method"] for r in server.requests] == ["send_command"]
    assert c.list_sessions() == []
    assert server.connections == 2
    assert [r["method"] for r in server.requests] == ["send_command", "list_sessions"]
    server.sock.close()


def test_an_idle_connection_closed_by_the_manager_is_replaced(client: SessionManagerClient) -> None:
    client.list_sessions()
    first = client._sock
    assert first is not None
    first.shutdown(socket.SHUT_RDWR)  # as if the manager had closed it while idle
    assert isinstance(client.list_sessions(), list)
    assert client._sock is not first


@pytest.fixture()
def token_manager(blender: tuple[str, int]) -> Iterator[tuple[str, int]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSION_MANAGER_", "BLENDER_"))}
    p = Process([str(manager_binary()), "serve", "--listen", "127.0.0.1:0", "--compat-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                 "--blender", "%s:%d" % blender, "--db", ":memory:", "--token", "s3cret"], env=env)
    try:
        m = p.wait_line(r"session manager started .*jsonrpc=(\S+)")
        host, port = m.group(1).rsplit(":", 1)
        yield host, int(port)
    finally:
        p.stop()


def test_token_authenticates_each_connection(token_manager: tuple[str, int]) -> None:
    host, port = token_manager
    with pytest.raises(SessionManagerError) as e:
        SessionManagerClient(host, port).list_sessions()
    assert (e.value.code, e.value.kind) == (-32007, "unauthorized")
    with pytest.raises(SessionManagerError) as e:
        SessionManagerClient(host, port, token="wrong").list_sessions()
    assert e.value.kind == "unauthorized" and "wrong token" in e.value.message

    with SessionManagerClient(host, port, token="s3cret") as c:
        sid = c.create_session()
        assert c.send_command(sid, "execute_code", {"code": "print('ok')"})["result"]["result"] == "ok\n"
        c._sock.shutdown(socket.SHUT_RDWR)  # the replacement connection authenticates again
        assert c.get_session_info(sid)["command_count"] == 1
        c.close_session(sid)

    r = subprocess.run([sys.executable, str(CLIENT), "--manager", f"{host}:{port}", "status"],
                       env={**os.environ, "SESSION_MANAGER_TOKEN": "s3cret"}, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["version"]


def test_command_line(manager: Manager) -> None:
    addr = "%s:%d" % manager.rpc_addr

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(CLIENT), "--manager", addr, *args],
                              capture_output=True, text=True, timeout=60)

    r = cli("status")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["backends"][0]["state"] == "up"
    sid = cli("create").stdout.strip()
    assert SESSION_RE.match(sid)
    r = cli("call", "execute_code", '{"code": "print(6 * 7)"}', "--session", sid)
    assert r.returncode == 0 and json.loads(r.stdout)["result"]["result"] == "42\n"
    r = cli("history", sid)
    assert [e["command"] for e in json.loads(r.stdout)] == ["execute_code"]
    r = cli("info", "scene-20260106-101530-a1b2c3d4")
    assert r.returncode == 1 and "Session not found" in r.stderr and "-32001" in r.stderr

    r = subprocess.run([sys.executable, str(CLIENT), "--manager", f"127.0.0.1:{free_port()}", "status"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "cannot connect to the session manager" in r.stderr
