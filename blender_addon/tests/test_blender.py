"""The addon against real Blender: the headless runner started with the `bpy` wheel, spoken to over TCP."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from helpers import ADDON_DIR, FIXTURES, Client, HeadlessBlender, decode_png

RESET_SCENE = "import bpy\nbpy.ops.wm.read_homefile(use_factory_startup=True)"


@pytest.fixture(scope="module")
def blender(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HeadlessBlender]:
    runner = HeadlessBlender(tmp_path_factory.mktemp("headless"))
    yield runner
    assert runner.stop() == 0, runner.log()


@pytest.fixture
def client(blender: HeadlessBlender) -> Iterator[Client]:
    """A connection to a Blender whose scene is the factory default (Cube, Light, Camera)."""
    with blender.client() as reset:
        reset.run(RESET_SCENE)
    with blender.client() as connection:
        yield connection


def stock(name: str) -> tuple[bytes, bytes]:
    return (FIXTURES / f"{name}.request").read_bytes(), (FIXTURES / f"{name}.reply").read_bytes()


# -- scene ----------------------------------------------------------------------------------------


def test_default_scene_is_listed(client: Client) -> None:
    info = client.result("get_scene_info")
    assert info["name"] == "Scene"
    assert info["object_count"] == 3
    assert [(o["name"], o["type"]) for o in info["objects"]] == [("Cube", "MESH"), ("Light", "LIGHT"), ("Camera", "CAMERA")]
    assert all(o["visible"] for o in info["objects"])
    assert info["selection"] == ["Cube"] and info["active_object"] == "Cube"
    assert "materials_count" in info


def test_more_than_ten_objects_are_listed(client: Client) -> None:
    client.run("import bpy\nfor i in range(25):\n    bpy.ops.mesh.primitive_cube_add(location=(i, 2, 0))")
    info = client.result("get_scene_info")
    assert info["object_count"] == 28
    assert len(info["objects"]) == 28
    assert info["objects"][-1]["name"] == "Cube.025" and info["objects"][-1]["location"] == [24.0, 2.0, 0.0]
    assert info["active_object"] == "Cube.025" and info["selection"] == ["Cube.025"]


def test_object_info_and_unexpected_param(client: Client) -> None:
    info = client.result("get_object_info", {"name": "Cube"})
    assert info["mesh"] == {"vertices": 8, "edges": 12, "polygons": 6}
    reply = client.call("get_object_info", {"name": "Cube", "bogus": 1})
    assert reply["status"] == "error" and "bogus" in reply["message"]
    assert client.call("get_object_info", {"name": "Nope"}) == {"status": "error", "message": "Object not found: Nope"}
    assert client.result("get_object_info", {"name": "Light"})["type"] == "LIGHT"


# -- framing against the real thing -------------------------------------------------------------------


def test_pipelined_pair_in_one_send_is_answered_in_order(client: Client) -> None:
    first = json.dumps({"type": "execute_code", "params": {"code": "print('first')"}})
    second = json.dumps({"type": "get_object_info", "params": {"name": "Camera"}})
    client.send_raw((first + second).encode())
    assert client.read_reply()["result"]["result"] == "first\n"
    assert client.read_reply()["result"]["name"] == "Camera"


def test_malformed_then_valid_on_the_same_connection(client: Client) -> None:
    client.send_raw(b'{"type": "get_scene_info", "params": {]}\n')
    reply = client.read_reply()
    assert reply["status"] == "error" and reply["message"]
    client.send_raw(b'{"type": "get_scene_info", "params": {}}\n')
    assert client.read_reply()["result"]["object_count"] == 3


def test_utf8_character_split_across_two_sends(client: Client) -> None:
    data = json.dumps({"type": "execute_code", "params": {"code": "print('\u00e9\u65e5')"}}, ensure_ascii=False).encode()
    cut = data.index("\u65e5".encode()) + 2
    client.send_raw(data[:cut])
    threading.Event().wait(0.05)  # so the halves arrive as two reads
    client.send_raw(data[cut:])
    reply = client.read_reply()
    assert reply["result"]["result"] == "\u00e9\u65e5\n"


# -- execute_code ------------------------------------------------------------------------------


def test_namespace_persists_survives_reconnect_and_is_isolated(blender: HeadlessBlender) -> None:
    with blender.client() as first:
        first.run("counter = 41\ndef bump():\n    global counter\n    counter += 1\n    return counter", session_id="scene-a")
        assert first.run("print(bump())", session_id="scene-a") == "42\n"
    with blender.client() as again:  # same session id, new connection
        assert again.run("print(bump(), counter)", session_id="scene-a") == "43 43\n"
    with blender.client() as other:
        reply = other.call("execute_code", {"code": "print(counter)"}, session_id="scene-b")
        assert reply["status"] == "error" and "counter" in reply["message"]
        assert other.run("counter = 'b'\nprint(counter)", session_id="scene-b") == "b\n"
    with blender.client() as anonymous:  # no session id: a namespace of its own
        assert anonymous.call("execute_code", {"code": "print(counter)"})["status"] == "error"
    with blender.client() as back:
        assert back.run("print(counter)", session_id="scene-a") == "43\n"


@pytest.mark.parametrize(
    "code, kind",
    [
        ("raise SystemExit(3)", "SystemExit"),
        ("import sys\nprint('before')\nsys.exit()", "SystemExit"),
        ("raise KeyboardInterrupt", "KeyboardInterrupt"),
        ("def f():\n    return 1 / 0\nf()", "ZeroDivisionError"),
        ("def broken(:\n    pass", "SyntaxError"),
    ],
)
def test_execute_code_errors_are_replies_and_the_connection_stays(client: Client, code: str, kind: str) -> None:
    reply = client.call("execute_code", {"code": code})
    assert reply["status"] == "error"
    assert reply["message"].startswith("Code execution error: ")
    assert kind in reply["traceback"]
    assert client.result("ping")["pong"] is True
    assert client.run("print('alive')") == "alive\n"


def test_execute_code_error_wording_matches_stock(client: Client) -> None:
    request, reply = stock("execute_code_error")
    client.send_raw(request)
    ours = client.read_reply()
    assert ours["status"] == "error" and ours["message"] == json.loads(reply)["message"]
    assert "ValueError: boom" in ours["traceback"]


# -- _state -----------------------------------------------------------------------------------------


def test_state_first_then_only_when_changed(client: Client) -> None:
    first = client.call("get_scene_info", _state=True)
    assert first["_state"] == {"objects": ["Cube", "Light", "Camera"], "selection": ["Cube"], "active": "Cube"}
    assert "_state" not in client.call("ping", _state=True)
    assert "_state" not in client.call("get_object_info", {"name": "Cube"}, _state=True)
    added = client.call("execute_code", {"code": "import bpy\nbpy.ops.mesh.primitive_uv_sphere_add()"}, _state=True)
    assert added["_state"] == {"objects": ["Cube", "Light", "Camera", "Sphere"], "selection": ["Sphere"], "active": "Sphere"}
    assert "_state" not in client.call("get_scene_info", _state=True)
    deselected = client.call("execute_code", {"code": "import bpy\nbpy.ops.object.select_all(action='DESELECT')"}, _state=True)
    assert deselected["_state"]["selection"] == [] and deselected["_state"]["active"] == "Sphere"
    assert "_state" not in client.call("execute_code", {"code": "raise ValueError('x')"}, _state=True)


STATE_COMPUTATIONS = "import sys\nprint(sys.modules['blender_session_addon.statecache'].total_computations())"


def test_state_follows_python_api_edits_made_by_execute_code(client: Client) -> None:
    # Data-API edits fire no depsgraph handler in background mode: only the command's own marking
    # can make the next _state see them. Each step first caches the summary with a read-only command.
    # (Objects linked to the scene's own collection are listed before those of its children.)
    assert client.call("get_scene_info", _state=True)["_state"]["objects"] == ["Cube", "Light", "Camera"]
    added = client.call(
        "execute_code",
        {"code": "import bpy\nbpy.context.scene.collection.objects.link(bpy.data.objects.new('Empty', None))"},
        _state=True,
    )
    assert added["_state"] == {"objects": ["Empty", "Cube", "Light", "Camera"], "selection": ["Cube"], "active": "Cube"}

    assert "_state" not in client.call("get_object_info", {"name": "Empty"}, _state=True)
    client.run(  # without _state: still invalidates
        "import bpy\nbpy.data.objects['Cube'].select_set(False)\nbpy.data.objects['Light'].select_set(True)\n"
        "bpy.context.view_layer.objects.active = bpy.data.objects['Light']"
    )
    selected = client.call("get_object_info", {"name": "Light"}, _state=True)
    assert selected["_state"] == {"objects": ["Empty", "Cube", "Light", "Camera"], "selection": ["Light"], "active": "Light"}

    assert "_state" not in client.call("get_scene_info", _state=True)
    removed = client.call("execute_code", {"code": "import bpy\nbpy.data.objects.remove(bpy.data.objects['Light'])"}, _state=True)
    assert removed["_state"] == {"objects": ["Empty", "Cube", "Camera"], "selection": [], "active": None}

    renamed = client.call(
        "execute_code", {"code": "import bpy\nbpy.data.objects['Empty'].name = 'Target'\nraise ValueError('after the rename')"}, _state=True
    )
    assert renamed["status"] == "error" and renamed["_state"]["objects"] == ["Target", "Cube", "Camera"]


def test_state_is_reused_across_read_only_commands(client: Client) -> None:
    before = int(client.run(STATE_COMPUTATIONS))
    assert "_state" in client.call("get_scene_info", _state=True)
    for _ in range(5):
        assert "_state" not in client.call("get_scene_info", _state=True)
        assert "_state" not in client.call("get_object_info", {"name": "Cube"}, _state=True)
        assert "_state" not in client.call("ping", _state=True)
        assert "_state" not in client.call("get_addon_info", _state=True)
    assert int(client.run(STATE_COMPUTATIONS)) - before == 1
    # A mutating command recomputes it, once, even when nothing changed.
    assert "_state" not in client.call("execute_code", {"code": "pass"}, _state=True)
    assert "_state" not in client.call("get_scene_info", _state=True)
    assert int(client.run(STATE_COMPUTATIONS)) - before == 2


# Runs the service in this process so the main thread can edit the scene between two commands, the
# way a user does in the UI; a client thread sends the commands.
BETWEEN_COMMANDS_SCRIPT = r"""
import json, queue, socket, sys, threading
sys.path.insert(0, sys.argv[1])
import bpy
from blender_session_addon import scene_events
from blender_session_addon.app import SessionService

def ours(name):
    return [h for h in getattr(bpy.app.handlers, name) if getattr(h, "__module__", "") == scene_events.__name__]

service = SessionService(host="127.0.0.1", port=0)
host, port = service.start()
assert all(len(ours(name)) == 1 for name in scene_events.HANDLER_LISTS), "handlers not registered"
edits = queue.Queue()   # client thread -> main thread: code to run between two commands
done = queue.Queue()    # main thread -> client thread: the edit ran
replies = {}

def client():
    try:
        with socket.create_connection((host, port), timeout=60) as s:
            reader = s.makefile("rb")
            def call(command, **params):
                s.sendall(json.dumps({"type": command, "params": params, "_state": True}).encode())
                return json.loads(reader.readline())
            def between(code):
                edits.put(code)
                done.get(timeout=60)
            replies["first"] = call("get_scene_info")
            between("bpy.data.objects['Light'].select_set(True)\n"
                    "bpy.context.view_layer.objects.active = bpy.data.objects['Camera']\n"
                    "bpy.data.objects['Cube'].name = 'Box'\n"
                    "bpy.context.view_layer.update()")
            replies["after_update"] = call("get_object_info", name="Box")
            between("bpy.ops.wm.read_homefile(use_factory_startup=True)")
            replies["after_load"] = call("get_scene_info")
            between("bpy.ops.object.select_all(action='DESELECT')")
            replies["after_operator"] = call("ping")
    except BaseException as exc:
        replies["error"] = repr(exc)
        raise
    finally:
        edits.put(None)

talker = threading.Thread(target=client)
talker.start()
while True:   # the main thread: serve commands, and run each edit between two of them
    service.drain(timeout=0.01)
    try:
        code = edits.get_nowait()
    except queue.Empty:
        continue
    if code is None:
        break
    exec(code)
    done.put(True)
talker.join()
service.stop()
assert not any(ours(name) for name in scene_events.HANDLER_LISTS), "handlers left registered"
assert "error" not in replies, replies["error"]
print("RESULT", json.dumps(replies))
"""


def test_state_sees_edits_made_between_commands(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", BETWEEN_COMMANDS_SCRIPT, str(ADDON_DIR)], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(l for l in result.stdout.splitlines() if l.startswith("RESULT "))
    replies = json.loads(line[len("RESULT ") :])
    assert replies["first"]["_state"] == {"objects": ["Cube", "Light", "Camera"], "selection": ["Cube"], "active": "Cube"}
    assert replies["after_update"]["status"] == "success"
    assert replies["after_update"]["_state"] == {"objects": ["Box", "Light", "Camera"], "selection": ["Box", "Light"], "active": "Camera"}
    assert replies["after_load"]["_state"] == {"objects": ["Cube", "Light", "Camera"], "selection": ["Cube"], "active": "Cube"}
    assert replies["after_operator"]["_state"] == {"objects": ["Cube", "Light", "Camera"], "selection": [], "active": "Cube"}


# -- screenshots ------------------------------------------------------------------------------------

RENDER_SETTINGS = (
    "import bpy\ns = bpy.context.scene\nr = s.render\n"
    "print(r.engine, r.resolution_x, r.resolution_y, r.resolution_percentage, r.filepath,"
    " r.image_settings.file_format, s.cycles.samples, s.cycles.use_denoising, s.cycles.device, s.camera and s.camera.name)"
)


def test_screenshot_is_an_inline_png_with_the_requested_long_side(client: Client) -> None:
    before = client.run(RENDER_SETTINGS)
    shot = client.result("get_viewport_screenshot", {"max_size": 64})
    assert shot["format"] == "png" and shot["source"] == "render"
    assert re.fullmatch(r"[A-Za-z0-9+/]+=*", shot["image"])
    width, height, _ = decode_png(base64.b64decode(shot["image"], validate=True))
    assert (width, height) == (shot["width"], shot["height"]) == (64, 36)
    assert client.run(RENDER_SETTINGS) == before


def test_screenshot_without_a_camera_uses_a_temporary_one(client: Client) -> None:
    client.run(
        "import bpy\nbpy.data.objects.remove(bpy.data.objects['Camera'])\n"
        "bpy.context.scene.render.resolution_x, bpy.context.scene.render.resolution_y = 300, 600"
    )
    objects = client.result("get_scene_info")["objects"]
    shot = client.result("get_viewport_screenshot", {"max_size": 40})
    width, height, _ = decode_png(base64.b64decode(shot["image"]))
    assert (width, height) == (shot["width"], shot["height"]) == (20, 40)
    assert client.result("get_scene_info")["objects"] == objects
    assert client.run("import bpy\nprint(bpy.context.scene.camera, len(bpy.data.cameras))") == "None 1\n"


def test_screenshot_also_writes_the_stock_filepath(client: Client, tmp_path: Path) -> None:
    target = tmp_path / "stock.png"
    shot = client.result("get_viewport_screenshot", {"max_size": 32, "filepath": str(target), "format": "png"})
    assert shot["success"] is True and shot["filepath"] == str(target)
    assert target.read_bytes() == base64.b64decode(shot["image"])
    assert client.call("get_viewport_screenshot", {"max_size": 32, "format": "jpeg"})["status"] == "error"


def test_screenshot_rejects_bad_sizes(client: Client) -> None:
    assert client.call("get_viewport_screenshot", {"max_size": 0})["status"] == "error"
    assert client.call("get_viewport_screenshot", {"max_size": "big"})["status"] == "error"
    assert client.result("ping")["pong"] is True


# -- several clients, sessions, info ------------------------------------------------------------------


def test_two_clients_at_once(client: Client, blender: HeadlessBlender) -> None:
    with blender.client() as other:
        client.send("execute_code", {"code": "import time\ntime.sleep(0.5)\nprint('slow')"}, session_id="scene-slow")
        # While the main thread sleeps, the probe is answered from the socket thread...
        assert other.result("ping", session_id="scene-fast")["pong"] is True
        # ...and Blender work from the second client queues behind the first.
        other.send("execute_code", {"code": "print('fast')"}, session_id="scene-fast")
        assert client.read_reply()["result"]["result"] == "slow\n"
        assert other.read_reply()["result"]["result"] == "fast\n"
        sessions = {s["session_id"]: s for s in other.result("get_sessions_info")["sessions"]}
        assert {"scene-slow", "scene-fast"} <= set(sessions)
        assert sessions["scene-fast"]["command_count"] == 3


def test_unknown_command_answers_like_stock(client: Client) -> None:
    request, reply = stock("unknown_command")
    client.send_raw(request)
    assert client.read_line() == reply + b"\n"


def test_addon_info(client: Client) -> None:
    info = client.result("get_addon_info")
    assert info["version"] == "0.1.0" and info["addon_version"] == [0, 1, 0]
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", info["blender_version"])
    assert info["background"] is True
    for capability in ("ping", "_state", "session_namespaces", "execute_code", "get_viewport_screenshot", "get_sessions_info"):
        assert capability in info["capabilities"]


# -- stock requests, byte for byte where the shapes are the same ----------------------------------------


def test_stock_requests_on_the_default_scene(client: Client) -> None:
    request, reply = stock("get_scene_info")
    client.send_raw(request)
    ours, theirs = client.read_reply()["result"], json.loads(reply)["result"]
    for key in ("name", "object_count", "materials_count"):
        assert ours[key] == theirs[key], key
    assert [{k: o[k] for k in ("name", "type", "location")} for o in ours["objects"]] == theirs["objects"]

    for name in ("get_object_info", "get_object_info_missing", "execute_code_unicode", "unknown_command"):
        request, reply = stock(name)
        client.send_raw(request)
        assert client.read_line() == reply + b"\n", name

    request, reply = stock("get_polyhaven_status")
    client.send_raw(request)
    assert client.read_reply()["result"]["enabled"] is False


def test_stock_requests_on_a_big_scene(client: Client) -> None:
    for name in ("execute_code_many_cubes", "get_object_info_mesh"):
        request, reply = stock(name)
        client.send_raw(request)
        assert client.read_line() == reply + b"\n", name

    request, reply = stock("get_scene_info_203_objects")
    client.send_raw(request)
    ours, theirs = client.read_reply()["result"], json.loads(reply)["result"]
    assert ours["object_count"] == theirs["object_count"] == 203
    assert len(theirs["objects"]) == 10 and len(ours["objects"]) == 203
    assert [{k: o[k] for k in ("name", "type", "location")} for o in ours["objects"][:10]] == theirs["objects"]


def test_stock_nan_and_infinity_reply(client: Client) -> None:
    client.run("import bpy\nbpy.data.objects['Cube'].location = (float('nan'), float('inf'), 0.0)")
    request, reply = stock("get_object_info_nan_inf")
    client.send_raw(request)
    assert client.read_line() == reply + b"\n"


# -- the runner itself ---------------------------------------------------------------------------------


def test_runner_ready_file_idle_sweep_and_sigint(tmp_path: Path) -> None:
    runner = HeadlessBlender(tmp_path, "--idle-timeout", "0.5", "--sweep-interval", "0.1")
    try:
        assert runner.ready_file.read_text().strip() == f"127.0.0.1:{runner.port}"
        with runner.client() as idle:
            assert idle.result("ping")["pong"] is True
            assert idle.wait_closed(timeout=30), "idle connection was not closed"
    finally:
        code = runner.stop(signal.SIGINT)
    assert code == 0, runner.log()
    assert not runner.ready_file.exists()


def test_runner_finishes_the_running_command_on_sigterm_and_a_second_signal_interrupts_it(tmp_path: Path) -> None:
    runner = HeadlessBlender(tmp_path)
    marker = tmp_path / "running"
    try:
        with runner.client() as spinning:
            spinning.send("execute_code", {"code": f"open({str(marker)!r}, 'w').close()\nwhile True:\n    pass"})
            deadline = time.monotonic() + 60
            while not marker.exists():  # the loop is now running on Blender's main thread
                assert time.monotonic() < deadline and runner.process.poll() is None, runner.log()
                time.sleep(0.01)
            runner.process.send_signal(signal.SIGTERM)
            runner.wait_for_log("signal 15: stopping")
            assert runner.process.poll() is None  # the first signal waits for the command
            runner.process.send_signal(signal.SIGTERM)
            reply = spinning.read_reply()
            assert reply["status"] == "error" and "KeyboardInterrupt" in reply["message"]
    finally:
        code = runner.stop()
    assert code == 0, runner.log()


def test_runner_opens_a_blend_file(client: Client, tmp_path: Path) -> None:
    saved = tmp_path / "scene.blend"
    client.run(
        "import bpy\nbpy.ops.mesh.primitive_monkey_add()\n"
        f"bpy.ops.wm.save_as_mainfile(filepath={str(saved)!r}, copy=True)"
    )
    runner = HeadlessBlender(tmp_path, "--blend", str(saved))
    try:
        with runner.client() as opened:
            assert "Suzanne" in [o["name"] for o in opened.result("get_scene_info")["objects"]]
    finally:
        assert runner.stop() == 0, runner.log()


def test_runner_reports_a_busy_port(blender: HeadlessBlender) -> None:
    result = subprocess.run(
        [sys.executable, str(ADDON_DIR / "headless.py"), "--port", str(blender.port)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "READY" not in result.stdout and "cannot listen" in result.stderr


# -- the UI addon: the same core registered in Blender ------------------------------------------------

UI_SCRIPT = r"""
import json, socket, sys, threading
import bpy, addon_utils
install = sys.argv[1]
if install == "extension":
    bpy.ops.extensions.package_install_files(filepath=sys.argv[2], repo="user_default", enable_on_install=True)
    module = "bl_ext.user_default.blender_session_addon"
else:
    sys.path.insert(0, sys.argv[2])
    module = "blender_session_addon"
    addon_utils.enable(module, default_set=True)
assert hasattr(bpy.types, "BLENDER_SESSION_PT_panel")
probe = socket.socket(); probe.bind(("127.0.0.1", 0)); port = probe.getsockname()[1]; probe.close()
prefs = bpy.context.preferences.addons[module].preferences
prefs.port = port
assert bpy.ops.blender_session.start_server() == {"FINISHED"}
ui = sys.modules[module + ".ui"]
replies = []
def talk():
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        reader = s.makefile("rb")
        s.sendall(b'{"type": "get_scene_info"}')
        replies.append(json.loads(reader.readline()))
talker = threading.Thread(target=talk)
talker.start()
while talker.is_alive():   # what the bpy.app.timers timer does in a UI session
    ui._drain_timer()
    talker.join(0.01)

class Layout:              # stands in for UILayout: there is no window to draw in
    def __init__(self): self.labels = []
    def __getattr__(self, name): return lambda *a, **k: self
    def label(self, text="", **k): self.labels.append(text)
with socket.create_connection(("127.0.0.1", port), timeout=30) as connected:
    connected.sendall(b'{"type": "ping", "session_id": "scene-panel"}')
    connected.makefile("rb").readline()
    panel = type("PanelStub", (), {})()
    panel.layout = Layout()
    ui.BLENDER_SESSION_PT_panel.draw(panel, bpy.context)
labels = panel.layout.labels
assert any(text.startswith("Listening on 127.0.0.1:") for text in labels), labels
assert "Sessions: 1" in labels and "scene-panel" in labels, labels
assert bpy.ops.blender_session.stop_server() == {"FINISHED"}
print("RESULT", json.dumps(replies))
"""


@pytest.mark.parametrize("install", ["legacy", "extension"])
def test_ui_addon_registers_and_serves(install: str, tmp_path: Path) -> None:
    if install == "extension":
        built = subprocess.run(
            ["bash", str(ADDON_DIR.parent / "scripts" / "package_addon.sh"), str(tmp_path / "dist")],
            capture_output=True,
            text=True,
            check=True,
        )
        target = built.stdout.strip().splitlines()[-1]
    else:
        target = str(ADDON_DIR)
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", UI_SCRIPT, install, target], capture_output=True, text=True, timeout=180, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(l for l in result.stdout.splitlines() if l.startswith("RESULT "))
    (reply,) = json.loads(line[len("RESULT ") :])
    assert reply["result"]["object_count"] == 3


def test_versions_agree() -> None:
    package = ADDON_DIR / "blender_session_addon"
    manifest = (package / "blender_manifest.toml").read_text()
    init = (package / "__init__.py").read_text()
    version = re.search(r'^version = "([^"]+)"', manifest, re.M).group(1)  # type: ignore[union-attr]
    bl_info = re.search(r'"version": \((\d+), (\d+), (\d+)\)', init).groups()  # type: ignore[union-attr]
    from blender_session_addon.version import ADDON_VERSION

    assert version == ".".join(bl_info) == ADDON_VERSION
