"""Reading the scene: `get_scene_info`, `get_object_info` and the `_state` summary (main thread only).

The reply shapes keep the stock addon's keys (`name`, `object_count`, `objects`, `materials_count`;
the stock `get_object_info` dict key for key) so stock clients keep working; ours lists every object,
not the first ten, and adds visibility, selection and the active object.
"""

from __future__ import annotations

from typing import Any, Optional

import bpy
import mathutils


def _view_layer(scene: Any) -> Any:
    layer = getattr(bpy.context, "view_layer", None)
    if layer is None or layer.id_data != scene:
        layer = scene.view_layers[0] if len(scene.view_layers) else None
    return layer


def _selected(obj: Any, layer: Any) -> bool:
    try:
        return bool(obj.select_get(view_layer=layer))
    except (RuntimeError, TypeError):
        return False


def _visible(obj: Any, layer: Any) -> bool:
    try:
        return bool(obj.visible_get(view_layer=layer))
    except (RuntimeError, TypeError):
        return False


def _active_name(layer: Any) -> Optional[str]:
    if layer is None:
        return None
    active = layer.objects.active
    return active.name if active is not None else None


def scene_info() -> dict[str, Any]:
    scene = bpy.context.scene
    layer = _view_layer(scene)
    objects = []
    selection = []
    for obj in scene.objects:
        selected = _selected(obj, layer)
        if selected:
            selection.append(obj.name)
        objects.append(
            {
                "name": obj.name,
                "type": obj.type,
                "location": [round(float(v), 2) for v in obj.location],
                "visible": _visible(obj, layer),
                "hide_viewport": bool(obj.hide_viewport),
                "hide_render": bool(obj.hide_render),
                "selected": selected,
            }
        )
    return {
        "name": scene.name,
        "object_count": len(objects),
        "objects": objects,
        "materials_count": len(bpy.data.materials),
        "selection": selection,
        "active_object": _active_name(layer),
        "frame_current": scene.frame_current,
    }


def _world_bounding_box(obj: Any) -> list[list[float]]:
    corners = [obj.matrix_world @ mathutils.Vector(corner) for corner in obj.bound_box]
    low = [min(c[i] for c in corners) for i in range(3)]
    high = [max(c[i] for c in corners) for i in range(3)]
    return [low, high]


def object_info(name: str) -> dict[str, Any]:
    obj = bpy.data.objects.get(name)
    if obj is None:
        raise ValueError(f"Object not found: {name}")
    info: dict[str, Any] = {
        "name": obj.name,
        "type": obj.type,
        "location": [obj.location.x, obj.location.y, obj.location.z],
        "rotation": [obj.rotation_euler.x, obj.rotation_euler.y, obj.rotation_euler.z],
        "scale": [obj.scale.x, obj.scale.y, obj.scale.z],
        "visible": obj.visible_get(),
        "materials": [slot.material.name for slot in obj.material_slots if slot.material],
    }
    if obj.type == "MESH":
        info["world_bounding_box"] = _world_bounding_box(obj)
        if obj.data:
            info["mesh"] = {
                "vertices": len(obj.data.vertices),
                "edges": len(obj.data.edges),
                "polygons": len(obj.data.polygons),
            }
    return info


def scene_state() -> dict[str, Any]:
    """The `_state` summary: object names, selected names, active object name (or None)."""
    scene = bpy.context.scene
    layer = _view_layer(scene)
    names = [obj.name for obj in scene.objects]
    selection = [obj.name for obj in scene.objects if _selected(obj, layer)]
    return {"objects": names, "selection": selection, "active": _active_name(layer)}
