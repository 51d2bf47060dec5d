"""`blender-session-manager mcp` driven by the official Python MCP client over stdio, in front of
a real manager and real headless Blender: tools listed with their schemas, a call creating a
session, a call reusing it, a screenshot as image content, errors as tool errors, a job started
then fetched, and a slow call handed over to a job."""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import tempfile
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, TypeVar

import harness
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, ImageContent, TextContent

from harness import Manager, Process, manager_binary, start_manager

CATALOGUE_TOOLS = {"execute_blender_code", "get_scene_info", "get_object_info", "get_viewport_screenshot"}
EXTRA_TOOLS = {
    "create_session",
    "close_session",
    "get_session_history",
    "submit_job",
    "get_job",
    "get_job_result",
    "cancel_job",
    "list_jobs",
}
SESSION_LINE = re.compile(r"^session_id: (scene-\d{8}-\d{6}-[0-9a-f]{8})$", re.M)
JOB_LINE = re.compile(r"^job_id: (\S+)$", re.M)
CALL_TIMEOUT = timedelta(seconds=60)

T = TypeVar("T")


@asynccontextmanager
async def mcp_session(address: str) -> AsyncIterator[ClientSession]:
    """The `mcp` subcommand as a stdio child, pointed at `address`, initialised."""
    params = StdioServerParameters(command=str(manager_binary()), args=["mcp", "--manager", address])
    with tempfile.TemporaryFile("w+") as errlog:
        try:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    init = await session.initialize()
                    assert init.serverInfo.name == "blender-session-manager"
                    assert init.capabilities.tools is not None
                    yield session
        except BaseException:
            errlog.seek(0)
            print("mcp server stderr:\n" + errlog.read())
            raise


def run_with_mcp(manager_addr: str, body: Callable[[ClientSession], Awaitable[T]]) -> T:
    async def main() -> T:
        async with mcp_session(manager_addr) as session:
            return await asyncio.wait_for(body(session), 120)

    return asyncio.run(main())


def address(manager: Manager) -> str:
    host, port = manager.rpc_addr
    return f"{host}:{port}"


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


async def call(session: ClientSession, name: str, **arguments) -> CallToolResult:
    return await session.call_tool(name, arguments, read_timeout_seconds=CALL_TIMEOUT)


def test_lists_the_catalogue_and_the_session_and_job_tools(manager: Manager) -> None:
    async def body(session: ClientSession) -> None:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert CATALOGUE_TOOLS | EXTRA_TOOLS <= set(tools), sorted(tools)
        catalogue = {t["name"]: t for t in manager.call("list_tools")}
        for name in CATALOGUE_TOOLS:
            schema = tools[name].inputSchema
            assert schema == catalogue[name]["input_schema"], name
            assert schema["properties"]["session_id"]["type"] == "string"
            assert "session_id" not in schema.get("required", [])
            assert tools[name].description
        assert tools["execute_blender_code"].inputSchema["required"] == ["code"]
        submit = tools["submit_job"].inputSchema
        assert set(submit["properties"]) == {"session_id", "command_type", "params"}
        assert submit["required"] == ["command_type"]
        assert "wait" in tools["get_job_result"].inputSchema["properties"]
        for name in EXTRA_TOOLS:
            assert tools[name].description, name

    run_with_mcp(address(manager), body)


def test_a_call_without_session_creates_one_and_a_call_with_it_reuses_it(manager: Manager) -> None:
    before = {s["session_id"] for s in manager.call("list_sessions")}

    async def body(session: ClientSession) -> tuple[str, CallToolResult]:
        first = await call(session, "execute_blender_code", code="x = 41\nprint('set')")
        assert not first.isError, text_of(first)
        m = SESSION_LINE.search(text_of(first))
        assert m, text_of(first)
        sid = m.group(1)
        assert "set" in text_of(first)
        second = await call(session, "execute_blender_code", code="print(x + 1)", session_id=sid)
        return sid, second

    sid, second = run_with_mcp(address(manager), body)
    assert not second.isError, text_of(second)
    assert text_of(second) == f"session_id: {sid}\n42\n"
    created = {s["session_id"] for s in manager.call("list_sessions")} - before
    assert created == {sid}
    history = manager.call("get_session_history", session_id=sid)
    assert [e["params"]["code"] for e in history] == ["x = 41\nprint('set')", "print(x + 1)"]
    manager.call("close_session", session_id=sid)


def test_screenshot_is_png_image_content(manager: Manager) -> None:
    async def body(session: ClientSession) -> CallToolResult:
        return await call(session, "get_viewport_screenshot", max_size=64)

    result = run_with_mcp(address(manager), body)
    assert not result.isError, text_of(result)
    images = [c for c in result.content if isinstance(c, ImageContent)]
    assert len(images) == 1
    assert images[0].mimeType == "image/png"
    png = base64.b64decode(images[0].data)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width = int.from_bytes(png[16:20], "big")
    height = int.from_bytes(png[20:24], "big")
    assert max(width, height) == 64
    caption = text_of(result)
    assert SESSION_LINE.search(caption) and f"{width}×{height} px PNG" in caption, caption


def test_blender_and_manager_errors_are_tool_errors(manager: Manager) -> None:
    async def body(session: ClientSession) -> list[CallToolResult]:
        return [
            await call(session, "execute_blender_code", code="raise ValueError('boom')"),
            await call(session, "get_object_info", object_name="NoSuchObject"),
            await call(session, "get_scene_info", session_id="scene-20000101-000000-00000000"),
            await call(session, "get_job", job_id="no-such-job"),
        ]

    boom, missing, no_session, no_job = run_with_mcp(address(manager), body)
    assert boom.isError
    assert "boom" in text_of(boom) and "ValueError" in text_of(boom)
    assert SESSION_LINE.search(text_of(boom))
    assert missing.isError and "NoSuchObject" in text_of(missing)
    assert no_session.isError
    assert "session_not_found" in text_of(no_session) and "-32001" in text_of(no_session)
    assert no_job.isError and "job_not_found" in text_of(no_job)


def test_submit_job_then_get_job_result(manager: Manager) -> None:
    sid = manager.call("create_session")["session_id"]

    async def body(session: ClientSession) -> tuple[str, CallToolResult, CallToolResult, CallToolResult]:
        submitted = await call(
            session,
            "submit_job",
            session_id=sid,
            command_type="execute_code",
            params={"code": "import time\ntime.sleep(0.5)\nprint('from a job')"},
        )
        assert not submitted.isError, text_of(submitted)
        m = JOB_LINE.search(text_of(submitted))
        assert m, text_of(submitted)
        job_id = m.group(1)
        status = await call(session, "get_job", job_id=job_id)
        result = await call(session, "get_job_result", job_id=job_id, wait=20)
        listed = await call(session, "list_jobs", session_id=sid)
        return job_id, status, result, listed

    job_id, status, result, listed = run_with_mcp(address(manager), body)
    assert f"job_id: {job_id}" in text_of(status)
    assert not result.isError, text_of(result)
    assert text_of(result) == f"job_id: {job_id}\nstatus: completed\nfrom a job\n"
    assert job_id in text_of(listed) and "completed" in text_of(listed)
    assert manager.call("get_job", job_id=job_id)["status"] == "completed"
    manager.call("close_session", session_id=sid)


def test_a_call_outliving_the_managers_wait_answers_with_a_job_to_fetch(
    blender: tuple[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The harness's manager, with the sync wait cut to 1 s so a 2.5 s command is handed over.
    monkeypatch.setattr(harness, "Process", lambda args, env=None: Process([*args, "--sync-wait", "1"], env))
    manager = start_manager(blender, tmp_path / "manager.db")
    try:

        async def body(session: ClientSession) -> tuple[CallToolResult, CallToolResult]:
            slow = await call(session, "execute_blender_code", code="import time\ntime.sleep(2.5)\nprint('slow')")
            m = JOB_LINE.search(text_of(slow))
            assert m, text_of(slow)
            return slow, await call(session, "get_job_result", job_id=m.group(1), wait=20)

        slow, fetched = run_with_mcp(address(manager), body)
        assert not slow.isError, text_of(slow)
        assert SESSION_LINE.search(text_of(slow)) and "get_job_result" in text_of(slow)
        job_id = JOB_LINE.search(text_of(slow)).group(1)
        assert text_of(fetched) == f"job_id: {job_id}\nstatus: completed\nslow\n"
    finally:
        manager.stop()


def test_a_manager_that_is_not_up_gives_tool_errors_not_a_crash() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def body(session: ClientSession) -> tuple[set[str], CallToolResult, CallToolResult]:
        names = {t.name for t in (await session.list_tools()).tools}
        first = await call(session, "get_scene_info")
        second = await call(session, "list_jobs")
        return names, first, second

    names, first, second = run_with_mcp(f"127.0.0.1:{port}", body)
    assert CATALOGUE_TOOLS | EXTRA_TOOLS <= names
    for result in (first, second):
        assert result.isError
        assert f"cannot reach the manager at 127.0.0.1:{port}" in text_of(result)
