#!/usr/bin/env python3
"""A FastMCP server that forwards tool calls to the Blender Session Manager (seed 003's example).

Every tool takes an optional ``session_id``. A call without one gets a new session, and every
result says which session it used, so the model can pass it on the next call and keep working in
the same scene, with the same ``execute_blender_code`` variables.

    # stdio, as MCP hosts launch it (Claude Desktop, Cursor, Claude Code):
    .venv/bin/python scripts/mcp_server_example.py --manager 127.0.0.1:9880
    # Streamable HTTP on http://127.0.0.1:8765/mcp:
    .venv/bin/python scripts/mcp_server_example.py --transport streamable-http --port 8765

Claude Desktop (``claude_desktop_config.json``):

    {"mcpServers": {"blender-session": {
        "command": "/path/to/repo/.venv/bin/python",
        "args": ["/path/to/repo/scripts/mcp_server_example.py", "--manager", "127.0.0.1:9880"]}}}

Needs the ``mcp`` package (in the venv that scripts/python_env.sh creates); everything else is
the standard library and ``session_manager_client.py`` next to this file. The manager itself has
a built-in MCP server with no Python at all (``blender-session-manager mcp``); this file shows
how to build one of your own on top of the Python client.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import queue
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

import anyio
from mcp.server.fastmcp import FastMCP, Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from session_manager_client import SessionManagerClient, SessionManagerError, parse_address  # noqa: E402

mcp = FastMCP(
    "BlenderSessionManager",
    log_level="WARNING",
    instructions=(
        "Tools to drive Blender through a session manager. Each result names the session_id it "
        "used; pass it to later calls to keep working in the same scene. When a result says "
        "status 'pending', the work goes on as a job: fetch it with get_job_result(job_id)."
    ),
)


class ClientPool:
    """Idle manager connections, one per concurrent tool call (a client runs one request at a
    time, and a tool call may wait up to the manager's --sync-wait)."""

    def __init__(self) -> None:
        self.address = "127.0.0.1:9880"
        self.token: Optional[str] = None
        self._idle: "queue.LifoQueue[SessionManagerClient]" = queue.LifoQueue()

    @contextmanager
    def client(self) -> Iterator[SessionManagerClient]:
        try:
            c = self._idle.get_nowait()
        except queue.Empty:
            c = SessionManagerClient.from_address(self.address, token=self.token)
        try:
            yield c
        finally:
            self._idle.put(c)


pool = ClientPool()


def _tool_call(name: str, arguments: Dict[str, Any], session_id: Optional[str]) -> Dict[str, Any]:
    with pool.client() as c:
        return c.handle_tool_call(name, arguments, session_id=session_id or None)


async def forward(name: str, arguments: Dict[str, Any], session_id: Optional[str]) -> Dict[str, Any]:
    """``handle_tool_call`` on a worker thread (the client blocks); errors become tool errors."""
    try:
        return await anyio.to_thread.run_sync(_tool_call, name, arguments, session_id)
    except SessionManagerError as e:
        raise RuntimeError(f"{e.message} [{e.kind}]") from None


def as_text(reply: Dict[str, Any]) -> str:
    """``{"session_id", "result"}`` as indented JSON, the session id first."""
    return json.dumps({"session_id": reply.get("session_id"), "result": reply.get("result")}, indent=2)


@mcp.tool(structured_output=False)
async def execute_blender_code(code: str, session_id: Optional[str] = None) -> str:
    """Run Python code inside Blender (bpy is imported); print() what you want back.

    Variables persist between calls of the same session. Omit session_id to start a new session;
    the result says its id."""
    return as_text(await forward("execute_blender_code", {"code": code}, session_id))


@mcp.tool(structured_output=False)
async def get_scene_info(session_id: Optional[str] = None) -> str:
    """Describe the current Blender scene: its objects with type and location."""
    return as_text(await forward("get_scene_info", {}, session_id))


@mcp.tool(structured_output=False)
async def get_object_info(object_name: str, session_id: Optional[str] = None) -> str:
    """Describe one object: type, location, rotation, scale, materials, mesh."""
    return as_text(await forward("get_object_info", {"object_name": object_name}, session_id))


@mcp.tool(structured_output=False)
async def get_viewport_screenshot(max_size: int = 800, session_id: Optional[str] = None) -> List[Union[Image, str]]:
    """Capture the 3D viewport (a camera render when Blender runs headless) as a PNG image.

    max_size is the longest side in pixels."""
    reply = await forward("get_viewport_screenshot", {"max_size": max_size}, session_id)
    result = reply.get("result") or {}
    value = result.get("result") if result.get("status") == "success" else None
    if not isinstance(value, dict) or not isinstance(value.get("image"), str):
        return [as_text(reply)]
    meta = {k: v for k, v in value.items() if k != "image"}
    image = Image(data=base64.b64decode(value["image"]), format=str(value.get("format") or "png"))
    return [image, json.dumps({"session_id": reply.get("session_id"), "image": meta,
                               "job_id": result.get("job_id")})]


@mcp.tool(structured_output=False)
async def get_job_result(job_id: str, wait: float = 25) -> str:
    """Fetch the result of work that answered status 'pending' (a job id), waiting up to `wait`
    seconds for it to finish. Call again while the status is still pending or processing."""

    def fetch() -> Dict[str, Any]:
        with pool.client() as c:
            r = c.get_job_result(job_id, wait=max(0.0, float(wait)))
            session = c.get_job(job_id).get("session_id")
        return {"session_id": session, **r}

    try:
        return json.dumps(await anyio.to_thread.run_sync(fetch), indent=2)
    except SessionManagerError as e:
        raise RuntimeError(f"{e.message} [{e.kind}]") from None


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description="FastMCP server forwarding tool calls to the Blender Session Manager.")
    p.add_argument("--manager", default=os.environ.get("SESSION_MANAGER_MANAGER", "127.0.0.1:9880"),
                   help="manager JSON-RPC address (default: $SESSION_MANAGER_MANAGER or 127.0.0.1:9880)")
    p.add_argument("--token", default=os.environ.get("SESSION_MANAGER_TOKEN"),
                   help="token of a manager started with --token (default: $SESSION_MANAGER_TOKEN)")
    p.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    p.add_argument("--host", default="127.0.0.1", help="HTTP listen host (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="HTTP listen port (default 8765)")
    args = p.parse_args(argv)
    try:
        parse_address(args.manager)
    except ValueError as e:
        p.error(str(e))
    pool.address, pool.token = args.manager, args.token
    if args.transport == "streamable-http":
        mcp.settings.host, mcp.settings.port = args.host, args.port
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            # FastMCP only accepts loopback Host headers by default; a wider bind means the
            # caller chose to expose it (put it behind a proxy with authentication).
            mcp.settings.transport_security = None
        print(f"[mcp_server_example] MCP endpoint http://{args.host}:{args.port}/mcp "
              f"(manager {args.manager})", file=sys.stderr, flush=True)
    mcp.run(transport=args.transport)


if __name__ == "__main__":
    main()
