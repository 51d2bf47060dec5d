"""The manager in front of real Blender (headless `bpy` with the project's addon), and the
addon-compatible port driven by the real stock MCP servers' Blender clients."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from harness import REPO, Manager, start_manager

SESSION_RE = re.compile(r"^scene-\d{8}-\d{6}-[0-9a-f]{8}$")


def test_state_follows_execute_code_without_update_state(manager: Manager) -> None:
    info = manager.call("create_session")
    sid = info["session_id"]
    assert SESSION_RE.match(sid)
    assert info["blender"]["connected"] is True
    code = "import bpy\nbpy.ops.mesh.primitive_uv_sphere_add(location=(0, 0, 2))\nprint(bpy.context.active_object.name)"
    r = manager.call("send_command", session_id=sid, command_type="execute_code", params={"code": code})
    assert r["status"] == "success", r
    name = r["result"]["result"].strip()
    assert name.startswith("Sphere")
    info = manager.call("get_session_info", session_id=sid)
    assert name in info["state"]["objects"], info["state"]
    assert info["state"]["selection"] == name
    hist = manager.call("get_session_history", session_id=sid)
    assert [e["command"] for e in hist] == ["execute_code"]
    assert hist[0]["status"] == "success"
    assert hist[0]["params"] == {"code": code}
    manager.call("send_command", session_id=sid, command_type="execute_code",
                 params={"code": "import bpy\nbpy.data.objects.remove(bpy.data.objects[%r])" % name})
    manager.call("close_session", session_id=sid)


def test_execute_code_namespace_survives_between_commands_of_a_session(manager: Manager) -> None:
    a = manager.call("create_session")["session_id"]
    b = manager.call("create_session")["session_id"]
    manager.call("send_command", session_id=a, command_type="execute_code", params={"code": "counter = 41"})
    r = manager.call("send_command", session_id=a, command_type="execute_code", params={"code": "print(counter + 1)"})
    assert r["result"]["result"] == "42\n"
    r = manager.call("send_command", session_id=b, command_type="execute_code", params={"code": "print(counter)"})
    assert r["status"] == "error" and "counter" in r["message"], r


def test_real_blender_errors_are_normal_replies(manager: Manager) -> None:
    sid = manager.call("create_session")["session_id"]
    r = manager.call("send_command", session_id=sid, command_type="get_object_info", params={"name": "NoSuchObject"})
    assert r["status"] == "error"
    assert "NoSuchObject" in r["message"]
    r = manager.call("send_command", session_id=sid, command_type="no_such_command")
    assert r == {**r, "status": "error", "message": "Unknown command type: no_such_command"}
    hist = manager.call("get_session_history", session_id=sid)
    assert [e["status"] for e in hist] == ["error", "error"]
    assert manager.call("get_session_info", session_id=sid)["blender"]["connected"] is True


def test_tool_call_and_snapshot_against_real_blender(manager: Manager) -> None:
    r = manager.call("handle_tool_call", name="get_scene_info", arguments={})
    sid = r["session_id"]
    assert r["result"]["status"] == "success"
    scene = r["result"]["result"]
    assert {o["name"] for o in scene["objects"]} >= {"Cube", "Camera", "Light"}
    snap = manager.call("take_snapshot", session_id=sid)
    assert snap["scene"]["objects"] == scene["objects"] or len(snap["scene"]["objects"]) >= 3
    assert set(manager.call("get_session_info", session_id=sid)["state"]["objects"]) >= {"Cube", "Camera", "Light"}


STOCK_CLIENT = r"""
import json, sys
from blender_mcp.server import BlenderConnection
port = int(sys.argv[1])
conn = BlenderConnection(host="127.0.0.1", port=port)
scene = conn.send_command("get_scene_info")
out = conn.send_command("execute_code", {"code": "print('from stock client')"})
try:
    conn.send_command("get_object_info", {"name": "Nope"})
    missing = None
except Exception as e:
    missing = str(e)
print(json.dumps({"scene": scene, "out": out, "missing": missing}))
"""


def run_stock_client(manager: Manager, pythonpath: str | None) -> dict:
    env = dict(os.environ, DISABLE_TELEMETRY="1")  # the stock servers phone home otherwise
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    p = subprocess.run([sys.executable, "-c", STOCK_CLIENT, str(manager.compat_addr[1])],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def check_stock_result(manager: Manager, got: dict) -> None:
    names = {o["name"] for o in got["scene"]["objects"]}
    assert {"Cube", "Camera", "Light"} <= names
    assert got["out"]["result"] == "from stock client\n"
    assert got["missing"] and "Nope" in got["missing"]
    # The connection's session recorded all three commands, then closed with it.
    closed = [l for l in manager.process.lines if "compat connection closed its session" in l]
    assert closed, "\n".join(manager.process.lines)


def test_stock_mcp_for_blender_client_works_through_the_compat_port(manager: Manager) -> None:
    got = run_stock_client(manager, None)
    manager.process.wait_line("compat connection closed its session")
    check_stock_result(manager, got)


def test_classic_blender_mcp_client_works_through_the_compat_port(manager: Manager) -> None:
    classic = REPO / ".venv" / "stock" / "blender-mcp-1.6.5"
    assert classic.is_dir(), "scripts/python_env.sh installs blender-mcp 1.6.5 there"
    got = run_stock_client(manager, str(classic))
    manager.process.wait_line("compat connection closed its session")
    check_stock_result(manager, got)


def test_a_job_result_survives_a_manager_restart(blender: tuple[str, int], tmp_path: Path) -> None:
    db = tmp_path / "restart.db"
    first = start_manager(blender, db)
    sid = first.call("create_session")["session_id"]
    code = "import bpy, time\ntime.sleep(0.5)\nbpy.ops.mesh.primitive_cone_add()\nprint(bpy.context.active_object.name)"
    r = first.call("send_command", session_id=sid, command_type="execute_code", params={"code": code}, wait=0.05)
    assert r["status"] == "pending", r
    job = r["job_id"]
    done = first.call("get_job_result", job_id=job, wait=30)
    assert done["status"] == "completed", done
    first.stop()

    second = start_manager(blender, db)
    try:
        again = second.call("get_job_result", job_id=job)
        assert again["status"] == "completed"
        assert again["result"]["result"]["result"].startswith("Cone")
        info = second.call("get_session_info", session_id=sid)
        assert any(o.startswith("Cone") for o in info["state"]["objects"])
        # The restored session drives Blender again, with its execute_code namespace.
        r = second.call("send_command", session_id=sid, command_type="execute_code",
                        params={"code": "import bpy\nprint(len(bpy.data.objects))"})
        assert r["status"] == "success" and int(r["result"]["result"]) >= 4
        hist = second.call("get_session_history", session_id=sid)
        assert [e["job_id"] for e in hist][0] == job
        second.call("send_command", session_id=sid, command_type="execute_code",
                    params={"code": "import bpy\nfor o in list(bpy.data.objects):\n    o.name.startswith('Cone') and bpy.data.objects.remove(o)"})
    finally:
        second.stop()
