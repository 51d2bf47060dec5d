"""scripts/ollama_agent.py driven by a small fake Ollama `/api/chat` server, against the real manager
and real Blender; and the launcher's --start-ollama flag."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterator, List

import pytest

from harness import REPO, Manager, manager_binary

AGENT = REPO / "scripts" / "ollama_agent.py"
LAUNCHER = REPO / "scripts" / "start_manager.sh"
SESSION_RE = re.compile(r"session (scene-\d{8}-\d{6}-[0-9a-f]{8})")

Reply = Callable[[Dict[str, Any]], Dict[str, Any]]


class FakeOllama:
    """`POST /api/chat` answered by `script(request_body)`; every request body is recorded."""

    def __init__(self, script: Reply) -> None:
        self.requests: List[Dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                if self.path != "/api/chat":
                    self.send_error(404)
                    return
                message = script(body)
                out = json.dumps({"model": body.get("model"), "created_at": "2026-01-06T10:15:30Z",
                                  "message": message, "done": True, "done_reason": "stop"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def fake_ollama() -> Iterator[Callable[[Reply], FakeOllama]]:
    made: List[FakeOllama] = []

    def make(script: Reply) -> FakeOllama:
        made.append(FakeOllama(script))
        return made[-1]

    yield make
    for f in made:
        f.close()


def run_agent(ollama_url: str, manager_addr: str, *args: str, prompt: str = "make a cube") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSION_MANAGER_", "OLLAMA_"))}
    return subprocess.run(
        [sys.executable, str(AGENT), "--ollama-url", ollama_url, "--model", "fake-model",
         "--manager", manager_addr, *args, prompt],
        capture_output=True, text=True, timeout=120, env=env)


def tool_call(name: str, arguments: Any) -> Dict[str, Any]:
    return {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": name, "arguments": arguments}}]}


def addr(manager: Manager) -> str:
    return "%s:%d" % manager.rpc_addr


CUBE_CODE = ("import bpy\nbpy.ops.mesh.primitive_cube_add(location=(3, 0, 0))\n"
             "bpy.context.active_object.name = 'AgentCube'\nprint('made', bpy.context.active_object.name)")


def test_agent_runs_a_tool_call_then_prints_the_answer(manager: Manager, fake_ollama) -> None:
    def script(body: Dict[str, Any]) -> Dict[str, Any]:
        if any(m["role"] == "tool" for m in body["messages"]):
            return {"role": "assistant", "content": "I made a cube called AgentCube."}
        return tool_call("execute_blender_code", {"code": CUBE_CODE})

    fake = fake_ollama(script)
    r = run_agent(fake.url, addr(manager), prompt="make a cube")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "I made a cube called AgentCube."

    # What Ollama was sent: the catalogue in its format, without session_id.
    assert len(fake.requests) == 2
    first = fake.requests[0]
    assert first["model"] == "fake-model" and first["stream"] is False
    assert first["messages"][-1] == {"role": "user", "content": "make a cube"}
    tools = {t["function"]["name"]: t for t in first["tools"]}
    assert set(tools) >= {"execute_blender_code", "get_scene_info", "get_object_info", "get_viewport_screenshot"}
    assert all(t["type"] == "function" for t in tools.values())
    code_tool = tools["execute_blender_code"]["function"]
    assert code_tool["description"]
    assert code_tool["parameters"]["type"] == "object"
    assert code_tool["parameters"]["required"] == ["code"]
    assert code_tool["parameters"]["properties"]["code"]["type"] == "string"
    assert all("session_id" not in t["function"]["parameters"]["properties"] for t in tools.values())
    assert tools["get_object_info"]["function"]["parameters"]["required"] == ["object_name"]

    # The conversation sent back: the assistant's tool call, then the tool's result.
    second = fake.requests[1]["messages"]
    assert second[-2]["role"] == "assistant" and second[-2]["tool_calls"][0]["function"]["name"] == "execute_blender_code"
    assert second[-1] == {"role": "tool", "tool_name": "execute_blender_code", "content": "made AgentCube\n"}

    # One session, named on stderr, and the cube is in its scene state.
    sessions = set(SESSION_RE.findall(r.stderr))
    assert len(sessions) == 1, r.stderr
    sid = sessions.pop()
    assert [s["session_id"] for s in manager.call("list_sessions")] == [sid]
    assert "AgentCube" in manager.call("get_session_info", session_id=sid)["state"]["objects"]
    assert "execute_blender_code" in r.stderr
    manager.call("send_command", session_id=sid, command_type="execute_code",
                 params={"code": "import bpy\nbpy.data.objects.remove(bpy.data.objects['AgentCube'])"})


def test_agent_keeps_one_session_and_summarises_results(manager: Manager, fake_ollama) -> None:
    """String arguments (OpenAI style), a session kept across turns (the variable persists), a
    Blender error and a screenshot as text, a bad tool name reported to the model."""
    turns = [
        # Two calls in one reply; arguments as a JSON string.
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "execute_blender_code", "arguments": json.dumps({"code": "answer = 42"})}},
            {"function": {"name": "execute_blender_code",
                          "arguments": {"code": "print(answer)", "session_id": "scene-20260106-101530-a1b2c3d4"}}}]},
        tool_call("get_object_info", {"object_name": "NoSuchObject"}),
        tool_call("get_viewport_screenshot", {"max_size": 48}),
        tool_call("make_coffee", {}),
        {"role": "assistant", "content": "All done."},
    ]

    def script(body: Dict[str, Any]) -> Dict[str, Any]:
        return turns[len(fake.requests) - 1]

    fake = fake_ollama(script)
    r = run_agent(fake.url, addr(manager))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "All done."
    tool_msgs = [m for m in fake.requests[-1]["messages"] if m["role"] == "tool"]
    assert [m["tool_name"] for m in tool_msgs] == ["execute_blender_code", "execute_blender_code", "get_object_info",
                                                  "get_viewport_screenshot", "make_coffee"]
    assert tool_msgs[0]["content"].startswith("(ran without output")
    assert tool_msgs[1]["content"] == "42\n"
    assert tool_msgs[2]["content"].startswith("Blender error: ") and "NoSuchObject" in tool_msgs[2]["content"]
    assert re.match(r"screenshot taken: 48x\d+ png \(render\), \d+ bytes of base64 not shown$", tool_msgs[3]["content"])
    assert tool_msgs[4]["content"].startswith("error: unknown tool 'make_coffee'")
    assert len(manager.call("list_sessions")) == 1
    assert len(set(SESSION_RE.findall(r.stderr))) == 1


def test_agent_uses_the_given_session(manager: Manager, fake_ollama) -> None:
    sid = manager.call("create_session")["session_id"]
    manager.call("send_command", session_id=sid, command_type="execute_code", params={"code": "mark = 'given'"})
    fake = fake_ollama(lambda body: {"role": "assistant", "content": "ok"} if len(fake.requests) > 1
                       else tool_call("execute_blender_code", {"code": "print(mark)"}))
    r = run_agent(fake.url, addr(manager), "--session", sid)
    assert r.returncode == 0, r.stderr
    assert fake.requests[1]["messages"][-1]["content"] == "given\n"
    assert [s["session_id"] for s in manager.call("list_sessions")] == [sid]

    r = run_agent(fake.url, addr(manager), "--session", "scene-20260106-101530-a1b2c3d4")
    assert r.returncode == 1 and "Session not found" in r.stderr


def test_agent_stops_at_max_steps(manager: Manager, fake_ollama) -> None:
    fake = fake_ollama(lambda body: tool_call("get_scene_info", {}))
    r = run_agent(fake.url, addr(manager), "--max-steps", "2")
    assert r.returncode == 1
    assert "--max-steps 2" in r.stderr and r.stdout == ""
    assert len(fake.requests) == 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_agent_reports_unreachable_ollama_and_manager(manager: Manager, fake_ollama) -> None:
    r = run_agent(f"http://127.0.0.1:{free_port()}", addr(manager))
    assert r.returncode == 1
    assert "cannot reach Ollama at http://127.0.0.1:" in r.stderr and "Traceback" not in r.stderr

    fake = fake_ollama(lambda body: {"role": "assistant", "content": "unused"})
    port = free_port()
    r = run_agent(fake.url, f"127.0.0.1:{port}")
    assert r.returncode == 1
    assert f"cannot connect to the session manager at 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr
    assert fake.requests == []


# ---------------------------------------------------------------------- launcher: --start-ollama

def test_launcher_help_lists_the_new_flags_and_parses() -> None:
    assert subprocess.run(["bash", "-n", str(LAUNCHER)]).returncode == 0
    out = subprocess.run(["bash", str(LAUNCHER), "--help"], capture_output=True, text=True, timeout=30).stdout
    for flag in ("--start-ollama", "--start-mcp", "--mcp-port", "--manager-bin", "--with-blender", "--blender-host"):
        assert flag in out, out
    ps1 = (REPO / "scripts" / "start_manager.ps1").read_text()
    for flag in ("-StartOllama", "-StartMcp", "-McpPort", "[switch]$StartOllama", "[switch]$StartMcp"):
        assert flag in ps1


def test_launcher_start_ollama_without_ollama_installed_goes_on(blender: tuple[str, int]) -> None:
    ollama = shutil.which("ollama")
    path = os.environ.get("PATH", "")
    if ollama:
        ollama_dir = os.path.dirname(ollama)
        if ollama_dir in ("/usr/bin", "/bin"):
            pytest.skip("ollama is installed next to the system tools")
        path = os.pathsep.join(d for d in path.split(os.pathsep) if d != ollama_dir)
    with socket.socket() as s:
        s.settimeout(0.5)
        if s.connect_ex(("127.0.0.1", 11434)) == 0:
            pytest.skip("something answers on 127.0.0.1:11434")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSION_MANAGER_", "BLENDER_"))}
    env["PATH"] = path
    p = subprocess.Popen(
        ["bash", str(LAUNCHER), "--manager-bin", str(manager_binary()), "--blender-port", str(blender[1]),
         "--start-ollama", "--", "--listen", "127.0.0.1:0", "--compat-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--db", ":memory:"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, start_new_session=True)
    lines: List[str] = []
    try:
        assert p.stderr is not None
        deadline = time.monotonic() + 60
        for line in p.stderr:
            lines.append(line)
            if "session manager started" in line or time.monotonic() > deadline:
                break
        text = "".join(lines)
        assert "ollama is not installed" in text and "going on without it" in text, text
        assert "session manager started" in text, text
        assert p.poll() is None
    finally:
        p.send_signal(signal.SIGTERM)  # the launcher stops the manager it started
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
