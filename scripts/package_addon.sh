#!/usr/bin/env bash
# Build the zip users install in Blender: dist/blender_session_addon-<version>.zip.
# Usage: scripts/package_addon.sh [OUT_DIR]   (default: <repo>/dist)
#
# The archive holds one folder, blender_session_addon/, with blender_manifest.toml and bl_info in
# __init__.py, so the same file installs as an extension in Blender 4.2+ (Get Extensions > Install
# from Disk) and as a legacy addon in older Blender (Preferences > Add-ons > Install).
# Prints the zip's path as the last stdout line. Needs only a python3 (standard library).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
package="$repo/blender_addon/blender_session_addon"
python="${PYTHON:-$(command -v python3 || command -v python)}"

version="$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$package/blender_manifest.toml" | head -n 1)"
if [[ -z "$version" ]]; then
    echo "package_addon.sh: no version in $package/blender_manifest.toml" >&2
    exit 1
fi

out_dir="${1:-$repo/dist}"
mkdir -p "$out_dir"
zip_path="$(cd "$out_dir" && pwd)/blender_session_addon-$version.zip"

"$python" - "$package" "$zip_path" <<'PY'
import os
import sys
import zipfile

package, zip_path = sys.argv[1], sys.argv[2]
root = os.path.dirname(package)
temporary = zip_path + ".tmp"
with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
    for folder, dirs, files in os.walk(package):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")) or name.startswith("."):
                continue
            path = os.path.join(folder, name)
            archive.write(path, os.path.relpath(path, root).replace(os.sep, "/"))
os.replace(temporary, zip_path)
PY

echo "package_addon.sh: built $zip_path" >&2
echo "$zip_path"
