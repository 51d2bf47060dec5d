#!/usr/bin/env bash
# Start the Blender Session Manager (building it first when needed).
#
#   scripts/start_manager.sh [--blender-host HOST] [--blender-port PORT] [--with-blender]
#                            [--debug] [-- MANAGER_FLAGS...]
#
#   --blender-host HOST  Blender addon host (default: $BLENDER_HOST or 127.0.0.1)
#   --blender-port PORT  Blender addon port (default: $BLENDER_PORT or 9876)
#   --with-blender       when nothing listens on HOST:PORT, start a headless Blender with the
#                        project's addon there (a Python 3.11 venv with the `bpy` wheel is
#                        created on first use by scripts/python_env.sh), and stop it on exit
#   --debug              use a debug build (faster to build, slower to run)
#   Anything else (or after --) is passed to `blender-session-manager serve`, e.g.
#   --listen 127.0.0.1:9880 --idle-timeout 600 --log-format json.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
host="${BLENDER_HOST:-127.0.0.1}"
port="${BLENDER_PORT:-9876}"
with_blender=0
profile=release
passthrough=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --blender-host) host="$2"; shift 2 ;;
        --blender-port) port="$2"; shift 2 ;;
        --with-blender) with_blender=1; shift ;;
        --debug) profile=debug; shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; passthrough+=("$@"); break ;;
        *) passthrough+=("$1"); shift ;;
    esac
done

say() { printf '[start_manager] %s\n' "$*" >&2; }

# Build when the binary is missing or older than the sources.
bin="$repo/target/$profile/blender-session-manager"
if [[ ! -x "$bin" ]] || [[ -n "$(find "$repo/src" "$repo/Cargo.toml" "$repo/Cargo.lock" -newer "$bin" -print -quit)" ]]; then
    say "building the manager ($profile)"
    if [[ $profile == release ]]; then
        (cd "$repo" && cargo build --locked --release)
    else
        (cd "$repo" && cargo build --locked)
    fi
fi

listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

blender_pid=""
cleanup() {
    if [[ -n "$blender_pid" ]] && kill -0 "$blender_pid" 2>/dev/null; then
        say "stopping headless Blender (pid $blender_pid)"
        kill -TERM "$blender_pid" 2>/dev/null || true
        wait "$blender_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

if listening "$host" "$port"; then
    say "Blender addon found at $host:$port"
elif [[ $with_blender == 1 ]]; then
    case "$host" in
        127.*|localhost|::1) ;;
        *) say "nothing listens on $host:$port, and --with-blender only starts a local Blender"; exit 1 ;;
    esac
    say "no Blender at $host:$port: starting a headless one (first run installs bpy, ~350 MB)"
    python="$("$repo/scripts/python_env.sh")"
    ready="$(mktemp -u "${TMPDIR:-/tmp}/blender-ready.XXXXXX")"
    "$python" "$repo/blender_addon/headless.py" --host "$host" --port "$port" --ready-file "$ready" >&2 &
    blender_pid=$!
    for _ in $(seq 1 1200); do
        [[ -f "$ready" ]] && break
        if ! kill -0 "$blender_pid" 2>/dev/null; then
            say "headless Blender exited before it was ready"; exit 1
        fi
        sleep 0.1
    done
    [[ -f "$ready" ]] || { say "headless Blender not ready after 120 s"; exit 1; }
    say "headless Blender ready at $(cat "$ready") (pid $blender_pid)"
else
    say "nothing listens on $host:$port yet; the manager starts anyway and connects when Blender is up"
    say "(start Blender with the addon, or rerun with --with-blender for a headless one)"
fi

say "starting the manager (defaults: JSON-RPC 127.0.0.1:9880, addon-compatible 127.0.0.1:9877; its log names the real ones; Ctrl-C stops)"
"$bin" serve --blender "$host:$port" "${passthrough[@]}" &
manager_pid=$!
trap 'kill -TERM "$manager_pid" 2>/dev/null || true' INT TERM
set +e
wait "$manager_pid"
status=$?
# A signal interrupts the first wait; wait again for the manager's own exit.
if kill -0 "$manager_pid" 2>/dev/null; then wait "$manager_pid"; status=$?; fi
exit "$status"
