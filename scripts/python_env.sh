#!/usr/bin/env bash
# Create (or reuse) the test venv at <repo>/.venv with Python 3.11 and the packages in
# scripts/requirements-test.txt (real Blender as the `bpy` wheel, pytest, the stock MCP servers).
#
# The classic stock MCP server, blender-mcp 1.6.5, ships the same top-level package (`blender_mcp`)
# as mcp-for-blender, so the two cannot share site-packages: 1.6.5 goes, without dependencies (the
# venv already has them), into .venv/stock/blender-mcp-1.6.5. Run it with
#   PYTHONPATH=.venv/stock/blender-mcp-1.6.5 .venv/bin/python -m blender_mcp.server
#
# Packages are (re)installed only when the venv lacks them or the requirements changed: a hash of
# them is kept in .venv/.requirements-test.sha256, so a second run takes well under a second.
# All pip output goes to stderr; the last stdout line is the venv's python path.
#
# Environment: PYTHON (default python3.11) picks the interpreter the venv is built from.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
requirements="$repo/scripts/requirements-test.txt"
stamp="$venv/.requirements-test.sha256"
python="${PYTHON:-python3.11}"
classic_mcp="blender-mcp==1.6.5"
classic_target="$venv/stock/blender-mcp-1.6.5"

if ! command -v "$python" >/dev/null 2>&1; then
    echo "python_env.sh: $python not found; Python 3.11 is needed (the bpy wheel targets it)" >&2
    exit 1
fi

venv_python="$venv/bin/python"
if [[ -x "$venv_python" ]] && ! "$venv_python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    echo "python_env.sh: $venv is not a Python 3.11 venv; recreating it" >&2
    rm -rf "$venv"
fi
if [[ ! -x "$venv_python" ]]; then
    echo "python_env.sh: creating $venv" >&2
    "$python" -m venv "$venv" >&2
    rm -f "$stamp"
fi

wanted="$( (cat "$requirements"; echo "$classic_mcp") | sha256sum | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"
if [[ "$wanted" != "$have" ]]; then
    echo "python_env.sh: installing $requirements (bpy is a large download the first time)" >&2
    "$venv_python" -m pip install --disable-pip-version-check --progress-bar off \
        -r "$requirements" >&2
    rm -rf "$classic_target"
    "$venv_python" -m pip install --disable-pip-version-check --progress-bar off \
        --no-deps --target "$classic_target" "$classic_mcp" >&2
    "$venv_python" -c 'import bpy, pytest' >&2
    printf '%s\n' "$wanted" > "$stamp"
else
    echo "python_env.sh: $venv is up to date" >&2
fi

echo "$venv_python"
