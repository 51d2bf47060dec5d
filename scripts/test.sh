#!/usr/bin/env bash
# Runs every test of the project, installing what it needs on a fresh machine:
#   1. formatting and lints (cargo fmt --check, cargo clippy -D warnings);
#   2. Rust tests: unit, integration (in-process manager + mock Blender), process-level;
#   3. Python tests against real Blender (the `bpy` wheel, in the venv that
#      scripts/python_env.sh creates or reuses): the addon suite, and the manager
#      end to end with the real addon and the real stock MCP clients.
# Benchmarks are not part of it.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

# A clean checkout gains nothing from incremental compilation, and its cache
# would double target/'s size; local runs keep it unless told otherwise.
if [[ -n "${CI:-}" ]]; then
    export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --locked --all-targets --quiet -- -D warnings
echo "== Rust tests" >&2
cargo build --locked --quiet
cargo test --locked

echo "== Python tests against real Blender" >&2
python="$("$repo/scripts/python_env.sh")"
export SESSION_MANAGER_BIN="$repo/target/debug/blender-session-manager"
"$python" -m pytest -q -p no:cacheprovider blender_addon/tests tests/e2e
