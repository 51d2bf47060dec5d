"""`get_viewport_screenshot`: a PNG of what the scene looks like, returned inline (main thread only).

With a UI, the first 3D viewport is captured (`screen.screenshot_area`) and scaled so its long side
is `max_size`. Headless (`bpy.app.background`) there is no window and no GPU context may exist, so
nothing here touches EEVEE, Workbench, `gpu` or the screen operators: the scene camera is rendered
with Cycles on the CPU (few samples, no denoising) at a resolution whose long side is `max_size`.
Every render setting changed for that is restored afterwards, and a temporary camera, aimed at what
is visible, is added (then removed) when the scene has none.
"""

from __future__ import annotations

import base64
import math
import os
import shutil
import struct
import tempfile
from typing import Any, Optional

import bpy
import mathutils

RENDER_SAMPLES = 4
MAX_SIZE_LIMIT = 8192


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def capture(max_size: int = 800, filepath: Optional[str] = None, format: str = "png") -> dict[str, Any]:
    if isinstance(max_size, bool) or not isinstance(max_size, int) or not 1 <= max_size <= MAX_SIZE_LIMIT:
        raise ValueError(f"max_size must be an integer from 1 to {MAX_SIZE_LIMIT}")
    if str(format).lower() != "png":
        raise ValueError("Only the png format is supported")
    with tempfile.TemporaryDirectory(prefix="blender-session-shot-") as folder:
        path = os.path.join(folder, "shot.png")
        source = "render"
        if not bpy.app.background and _capture_viewport(path, max_size):
            source = "viewport"
        else:
            _render_camera(path, max_size)
        with open(path, "rb") as handle:
            data = handle.read()
        if filepath:
            # Stock clients pass a path and read the file themselves (same machine only).
            shutil.copyfile(path, filepath)
    width, height = png_size(data)
    reply: dict[str, Any] = {
        "image": base64.b64encode(data).decode("ascii"),
        "width": width,
        "height": height,
        "format": "png",
        "source": source,
    }
    if filepath:
        reply.update({"success": True, "filepath": filepath})
    return reply


def _scaled(width: float, height: float, max_size: int) -> tuple[int, int]:
    if width >= height:
        return max_size, max(1, round(max_size * height / width))
    return max(1, round(max_size * width / height)), max_size


# -- with a UI --------------------------------------------------------------------------------


def _capture_viewport(path: str, max_size: int) -> bool:
    """Screenshot the first 3D viewport into `path`; False when there is none to capture."""
    window_manager = bpy.context.window_manager
    for window in getattr(window_manager, "windows", []):
        for area in window.screen.areas:
            if area.type != "VIEW_3D":
                continue
            region = next((r for r in area.regions if r.type == "WINDOW"), None)
            try:
                with bpy.context.temp_override(window=window, screen=window.screen, area=area, region=region):
                    bpy.ops.screen.screenshot_area(filepath=path)
            except RuntimeError:
                return False
            if not os.path.exists(path):
                return False
            _shrink_png(path, max_size)
            return True
    return False


def _shrink_png(path: str, max_size: int) -> None:
    image = bpy.data.images.load(path, check_existing=False)
    try:
        width, height = image.size
        if width and height:
            new_width, new_height = _scaled(width, height, max_size)
            if (new_width, new_height) != (width, height):
                image.scale(new_width, new_height)
        image.filepath_raw = path
        image.file_format = "PNG"
        image.save()
    finally:
        bpy.data.images.remove(image)


# -- headless -----------------------------------------------------------------------------------


class _Saved:
    """Remembers attributes of Blender structs and puts them back, last changed first."""

    def __init__(self) -> None:
        self._values: list[tuple[Any, str, Any]] = []

    def set(self, owner: Any, name: str, value: Any) -> None:
        self._values.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    def restore(self) -> None:
        for owner, name, value in reversed(self._values):
            try:
                setattr(owner, name, value)
            except (AttributeError, TypeError, ValueError):
                pass
        self._values.clear()


def _render_camera(path: str, max_size: int) -> None:
    scene = bpy.context.scene
    render = scene.render
    saved = _Saved()
    temporary_camera = None
    try:
        if scene.camera is None:
            temporary_camera = _add_temporary_camera(scene)
            saved.set(scene, "camera", temporary_camera)
        aspect_width = render.resolution_x * render.pixel_aspect_x
        aspect_height = render.resolution_y * render.pixel_aspect_y
        width, height = _scaled(aspect_width, aspect_height, max_size)
        saved.set(render, "engine", "CYCLES")
        saved.set(render, "resolution_x", width)
        saved.set(render, "resolution_y", height)
        saved.set(render, "resolution_percentage", 100)
        saved.set(render, "pixel_aspect_x", 1.0)
        saved.set(render, "pixel_aspect_y", 1.0)
        saved.set(render, "use_border", False)
        saved.set(render, "filepath", path)
        saved.set(render, "use_file_extension", False)
        settings = render.image_settings
        saved.set(settings, "file_format", "PNG")
        saved.set(settings, "color_mode", "RGBA")
        saved.set(settings, "color_depth", "8")
        cycles = scene.cycles
        saved.set(cycles, "device", "CPU")
        saved.set(cycles, "samples", RENDER_SAMPLES)
        saved.set(cycles, "use_denoising", False)
        saved.set(cycles, "use_adaptive_sampling", False)
        result = bpy.ops.render.render(write_still=True, scene=scene.name)
        if "FINISHED" not in result or not os.path.exists(path):
            raise RuntimeError(f"Render failed ({', '.join(sorted(result)) or 'no result'})")
    finally:
        saved.restore()
        if temporary_camera is not None:
            camera_data = temporary_camera.data
            bpy.data.objects.remove(temporary_camera, do_unlink=True)
            if camera_data is not None and camera_data.users == 0:
                bpy.data.cameras.remove(camera_data)


def _visible_bounds(scene: Any) -> tuple[mathutils.Vector, float]:
    """Centre and radius of what a render would show (renderable, non-camera objects)."""
    low: Optional[mathutils.Vector] = None
    high: Optional[mathutils.Vector] = None
    for obj in scene.objects:
        if obj.hide_render or obj.type in {"CAMERA", "LIGHT", "SPEAKER", "LIGHT_PROBE"}:
            continue
        for corner in obj.bound_box:
            point = obj.matrix_world @ mathutils.Vector(corner)
            low = point.copy() if low is None else mathutils.Vector(map(min, low, point))
            high = point.copy() if high is None else mathutils.Vector(map(max, high, point))
    if low is None or high is None:
        return mathutils.Vector((0.0, 0.0, 0.0)), 1.0
    return (low + high) / 2, max((high - low).length / 2, 0.1)


def _add_temporary_camera(scene: Any) -> Any:
    center, radius = _visible_bounds(scene)
    data = bpy.data.cameras.new("session_preview_camera")
    camera = bpy.data.objects.new("session_preview_camera", data)
    scene.collection.objects.link(camera)
    direction = mathutils.Vector((1.0, -1.2, 0.8)).normalized()
    distance = radius / math.sin(min(data.angle_x, data.angle_y) / 2) * 1.1
    camera.location = center + direction * distance
    camera.rotation_euler = (-direction).to_track_quat("-Z", "Y").to_euler()
    data.clip_end = max(data.clip_end, distance + radius * 4)
    return camera
