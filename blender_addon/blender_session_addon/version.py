"""The addon's name and version (kept equal to bl_info and blender_manifest.toml; a test checks)."""

ADDON_NAME = "Blender Session Addon"
ADDON_VERSION = "0.1.0"
