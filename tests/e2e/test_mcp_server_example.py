"""scripts/mcp_server_example.py (FastMCP) driven by the real MCP Python client, over stdio and,
through the launcher's --start-mcp, over Streamable HTTP; against the real manager and Blender."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from harness import REPO, Manager, manager_binary

sys.path.insert(0, str(REPO / "scripts"))
from session_manager_client import SessionManagerClient  # noqa: E402

EXAMPLE = REPO / "scripts" / "mcp_server_example.py"
LAUNCHER = REPO / "scripts" / "start_manager.sh"


def clean_env() -> Dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("SESSION_MANAGER_", "BLENDER_"))}


def payload(result: Any) -> Dict[str, Any]:
    assert not result.isError, result.content
    return json.loads(result.content[0].text)


async def exercise(session: ClientSession, call: Callable[..., Any]) -> None:
    """List the tools, then use them; `call(method, **params)` checks the manager directly."""
    await session.initialize()
    tools = {t.name: t for t in (await session.list_tools()).tools}
    assert set(tools) == {"execute_blender_code", "get_scene_info", "get_object_info", "get_viewport_screenshot",
                          "get_job_result"}
    code_schema = tools["execute_blender_code"].inputSchema
    assert code_schema["required"] == ["code"]
    assert code_schema["properties"]["code"]["type"] == "string"
    assert "session_id" in code_schema["properties"]
    assert tools["get_object_info"].inputSchema["required"] == ["object_name"]
    assert tools["get_viewport_screenshot"].inputSchema["properties"]["max_size"]["default"] == 800
    assert tools["get_job_result"].inputSchema["required"] == ["job_id"]

    # A call without a session creates one and names it; the next call reuses it.
    first = payload(await session.call_tool("execute_blender_code", {"code": "kept = 41\nprint('set')"}))
    sid = first["session_id"]
    assert first["result"]["status"] == "success" and first["result"]["result"]["result"] == "set\n"
    second = payload(await session.call_tool("execute_blender_code", {"code": "print(kept + 1)", "session_id": sid}))
    assert second["session_id"] == sid
    assert second["result"]["result"]["result"] == "42\n"
    assert [s["session_id"] for s in call("list_sessions")] == [sid]
    assert [e["command"] for e in call("get_session_history", session_id=sid)] == ["execute_code"] * 2

    info = payload(await session.call_tool("get_object_info", {"object_name": "Camera", "session_id": sid}))
    assert info["session_id"] == sid and info["result"]["result"]["name"] == "Camera"

    shot = await session.call_tool("get_viewport_screenshot", {"max_size": 48, "session_id": sid})
    assert not shot.isError
    image, text = shot.content
    assert image.type == "image" and image.mimeType == "image/png"
    assert base64.b64decode(image.data).startswith(b"\x89PNG")
    assert json.loads(text.text)["session_id"] == sid

    job = payload(await session.call_tool("get_job_result", {"job_id": second["result"]["job_id"], "wait": 1}))
    assert job["session_id"] == sid and job["status"] == "completed"

    bad = await session.call_tool("get_scene_info", {"session_id": "scene-20260106-101530-a1b2c3d4"})
    assert bad.isError and "Session not found" in bad.content[0].text


def test_example_over_stdio(manager: Manager) -> None:
    params = StdioServerParameters(command=sys.executable,
                                   args=[str(EXAMPLE), "--manager", "%s:%d" % manager.rpc_addr],
                                   env=clean_env())

    async def run() -> None:
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await exercise(session, manager.call)

    asyncio.run(asyncio.wait_for(run(), 120))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_launcher_start_mcp_serves_the_example_over_http(blender: tuple[str, int]) -> None:
    """start_manager.sh --start-mcp: the manager plus the example on Streamable HTTP."""
    rpc, mcp_port = free_port(), free_port()
    p = subprocess.Popen(
        ["bash", str(LAUNCHER), "--manager-bin", str(manager_binary()), "--blender-port", str(blender[1]),
         "--start-mcp", "--mcp-port", str(mcp_port),
         "--", "--listen", f"127.0.0.1:{rpc}", "--compat-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--db", ":memory:"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=clean_env(), start_new_session=True)
    lines: List[str] = []
    try:
        assert p.stderr is not None
        for line in p.stderr:
            lines.append(line)
            if "MCP server (Streamable HTTP) at" in line or "did not come up" in line:
                break
        url = f"http://127.0.0.1:{mcp_port}/mcp"
        assert f"MCP server (Streamable HTTP) at {url} -> manager 127.0.0.1:{rpc}" in "".join(lines), "".join(lines)

        direct = SessionManagerClient("127.0.0.1", rpc)
        deadline = time.monotonic() + 30
        while True:  # the manager was started just before the MCP server; wait until it answers
            try:
                direct.get_manager_status()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

        async def run() -> None:
            async with streamable_http_client(url) as (read, write, _):
                async with ClientSession(read, write) as session:
                    await exercise(session, direct.call)

        try:
            asyncio.run(asyncio.wait_for(run(), 120))
        finally:
            direct.close()
    finally:
        p.send_signal(signal.SIGTERM)  # stops the manager, then the MCP server
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        rest = p.stderr.read() if p.stderr else ""
    assert "stopping the MCP server" in rest, rest
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", mcp_port)) != 0:
                break
        time.sleep(0.1)
    else:
        raise AssertionError("the MCP server still listens after the launcher exited")
