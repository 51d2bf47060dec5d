#!/usr/bin/env bash
# Start the Blender Session Manager (building it first when needed).
#
#   scripts/start_manager.sh [--blender-host HOST] [--blender-port PORT] [--with-blender]
#                            [--start-ollama] [--start-mcp] [--mcp-port PORT]
#                            [--debug | --manager-bin PATH] [-- MANAGER_FLAGS...]
#
#   --blender-host HOST  Blender addon host (default: $BLENDER_HOST or 127.0.0.1)
#   --blender-port PORT  Blender addon port (default: $BLENDER_PORT or 9876)
#   --with-blender       when nothing listens on HOST:PORT, start a headless Blender with the
#                        project's addon there (a Python 3.11 venv with the `bpy` wheel is
#                        created on first use by scripts/python_env.sh), and stop it on exit
#   --start-ollama       when `ollama` is installed and nothing answers on 127.0.0.1:11434, run
#                        `ollama serve` in the background (stopped on exit); when it is not
#                        installed, say so and go on (for scripts/ollama_agent.py)
#   --start-mcp          also serve the example FastMCP server (scripts/mcp_server_example.py)
#                        on Streamable HTTP at http://127.0.0.1:8765/mcp for MCP hosts that speak
#                        HTTP, with the venv's python; stopped on exit
#   --mcp-port PORT      port for --start-mcp (default 8765)
#   --debug              use a debug build (faster to build, slower to run)
#   --manager-bin PATH   run this manager binary as it is (no build)
#   Anything else (or after --) is passed to `blender-session-manager serve`, e.g.
#   --listen 127.0.0.1:9880 --idle-timeout 600 --log-format json.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
host="${BLENDER_HOST:-127.0.0.1}"
port="${BLENDER_PORT:-9876}"
with_blender=0
start_ollama=0
start_mcp=0
mcp_port=8765
profile=release
manager_bin=""
passthrough=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --blender-host) host="$2"; shift 2 ;;
        --blender-port) port="$2"; shift 2 ;;
        --with-blender) with_blender=1; shift ;;
        --start-ollama) start_ollama=1; shift ;;
        --start-mcp) start_mcp=1; shift ;;
        --mcp-port) mcp_port="$2"; shift 2 ;;
        --debug) profile=debug; shift ;;
        --manager-bin) manager_bin="$2"; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        --) shift; passthrough+=("$@"); break ;;
        *) passthrough+=("$1"); shift ;;
    esac
done

say() { printf '[start_manager] %s\n' "$*" >&2; }
listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
# Stop a child started here (by pid), politely, and wait for it.
stop_child() {
    local pid="$1" what="$2"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        say "stopping $what (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
}

blender_pid=""
ollama_pid=""
mcp_pid=""
manager_pid=""
cleanup() {
    stop_child "$manager_pid" "the manager"
    stop_child "$mcp_pid" "the MCP server"
    stop_child "$blender_pid" "headless Blender"
    stop_child "$ollama_pid" "ollama serve"
}
trap cleanup EXIT

if [[ $start_ollama == 1 ]]; then
    if listening 127.0.0.1 11434; then
        say "Ollama already answers on 127.0.0.1:11434"
    elif ! command -v ollama >/dev/null 2>&1; then
        say "ollama is not installed (https://ollama.com/download); going on without it"
    else
        ollama_log="$(mktemp "${TMPDIR:-/tmp}/ollama-serve.XXXXXX")"
        OLLAMA_HOST=127.0.0.1:11434 ollama serve >"$ollama_log" 2>&1 &
        ollama_pid=$!
        for _ in $(seq 1 300); do
            listening 127.0.0.1 11434 && break
            kill -0 "$ollama_pid" 2>/dev/null || break
            sleep 0.1
        done
        if listening 127.0.0.1 11434; then
            say "ollama serve started on http://127.0.0.1:11434 (pid $ollama_pid, log $ollama_log)"
        else
            say "ollama serve did not come up on 127.0.0.1:11434 (see $ollama_log); going on without it"
            stop_child "$ollama_pid" "ollama serve"
            ollama_pid=""
        fi
    fi
fi

# Build when the binary is missing or older than the sources.
bin="$repo/target/$profile/blender-session-manager"
if [[ -n "$manager_bin" ]]; then
    bin="$manager_bin"
    [[ -x "$bin" ]] || { say "--manager-bin $bin: not an executable file"; exit 1; }
elif [[ ! -x "$bin" ]] || [[ -n "$(find "$repo/src" "$repo/Cargo.toml" "$repo/Cargo.lock" -newer "$bin" -print -quit)" ]]; then
    say "building the manager ($profile)"
    if [[ $profile == release ]]; then
        (cd "$repo" && cargo build --locked --release)
    else
        (cd "$repo" && cargo build --locked)
    fi
fi

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

say "starting the manager (defaults: JSON-RPC 127.0.0.1:9880, addon-compatible 127.0.0.1:9877, HTTP 127.0.0.1:9881; its log names the real ones; Ctrl-C stops)"
"$bin" serve --blender "$host:$port" "${passthrough[@]}" &
manager_pid=$!
trap 'kill -TERM "$manager_pid" 2>/dev/null || true' INT TERM

if [[ $start_mcp == 1 ]]; then
    # The MCP server reaches the manager where --listen (or SESSION_MANAGER_LISTEN) puts it, and
    # uses its token (passed in the environment, not on the command line).
    manager_addr="${SESSION_MANAGER_LISTEN:-127.0.0.1:9880}"
    token="${SESSION_MANAGER_TOKEN:-}"
    for ((i = 0; i < ${#passthrough[@]}; i++)); do
        case "${passthrough[$i]}" in
            --listen) manager_addr="${passthrough[$((i + 1))]:-$manager_addr}" ;;
            --listen=*) manager_addr="${passthrough[$i]#--listen=}" ;;
            --token) token="${passthrough[$((i + 1))]:-}" ;;
            --token=*) token="${passthrough[$i]#--token=}" ;;
        esac
    done
    case "$manager_addr" in
        0.0.0.0:*) manager_addr="127.0.0.1:${manager_addr#0.0.0.0:}" ;;
        "[::]:"*) manager_addr="[::1]:${manager_addr#\[::\]:}" ;;
    esac
    if listening 127.0.0.1 "$mcp_port"; then
        say "something already listens on 127.0.0.1:$mcp_port: not starting the MCP server (use --mcp-port)"
    elif [[ -z "${python:-}" ]] && ! python="$("$repo/scripts/python_env.sh")"; then
        say "no Python venv for the MCP server (scripts/python_env.sh failed); the manager runs on without it"
    else
        SESSION_MANAGER_TOKEN="$token" "$python" "$repo/scripts/mcp_server_example.py" \
            --transport streamable-http --host 127.0.0.1 --port "$mcp_port" --manager "$manager_addr" >&2 &
        mcp_pid=$!
        for _ in $(seq 1 300); do
            listening 127.0.0.1 "$mcp_port" && break
            kill -0 "$mcp_pid" 2>/dev/null || break
            sleep 0.1
        done
        if listening 127.0.0.1 "$mcp_port"; then
            say "MCP server (Streamable HTTP) at http://127.0.0.1:$mcp_port/mcp -> manager $manager_addr (pid $mcp_pid)"
        else
            say "the MCP server did not come up on 127.0.0.1:$mcp_port (see its messages above); the manager runs on"
        fi
    fi
fi
set +e
wait "$manager_pid"
status=$?
# A signal interrupts the first wait; wait again for the manager's own exit.
if kill -0 "$manager_pid" 2>/dev/null; then wait "$manager_pid"; status=$?; fi
exit "$status"
