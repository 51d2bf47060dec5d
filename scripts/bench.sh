#!/usr/bin/env bash
# Run the benchmark suite: every scenario in one go, on 127.0.0.1 only.
#
#   scripts/bench.sh [--quick] [--no-build] [BENCH_FLAGS...]
#
#   --quick      a short smoke run (~1-2 minutes): fewer rounds and samples, 1,000 sessions
#                for the scale scenario, 10,000 for the sweep, a 4 MiB big reply
#   --no-build   use the release binaries as they are (target/release/blender-session-manager
#                and target/release/examples/bench)
#   Anything else goes to `bench run`, for example:
#     --only latency,throughput     scenarios to run (latency,throughput,big,scale,sweep,blender)
#     --out DIR                     where results go (default bench-results/)
#     --no-haproxy                  skip the HAProxy column
#     --manager-env RUST_LOG=warn   run the managers with this environment (experiments)
#     --manager-bin PATH            benchmark another manager binary
#     --client-threads N            load-generator threads in the throughput cells (default 1)
#
# The full run takes about 6-8 minutes on 2 cores. It prints tables and the goal verdicts and
# writes bench-results/results.json, results.csv and results.txt. HAProxy (TCP mode) is installed
# with apt-get when missing and possible; otherwise its column is skipped with a note. The
# real-Blender scenario runs when the `bpy` venv exists (scripts/python_env.sh creates .venv).
# Ctrl-C stops the run and every process it started (mock, managers, HAProxy, Blender).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

build=1
args=()
for a in "$@"; do
    case "$a" in
        --no-build) build=0 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) args+=("$a") ;;
    esac
done

say() { printf '[bench.sh] %s\n' "$*" >&2; }

if ! command -v haproxy >/dev/null 2>&1 && [[ ! -x /usr/sbin/haproxy ]]; then
    if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
        say "installing haproxy (apt-get)"
        if ! apt-get install -y haproxy >/dev/null 2>&1; then
            apt-get update >/dev/null 2>&1 || true
            apt-get install -y haproxy >/dev/null 2>&1 || say "could not install haproxy; its column will be skipped"
        fi
    else
        say "haproxy is not installed and cannot be installed here; its column will be skipped"
    fi
fi

if [[ $build == 1 ]]; then
    say "building the release manager and load generator"
    cargo build --release --locked --bin blender-session-manager --example bench
fi

# Each session holds sockets in the manager, the mock and HAProxy: use the hard limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (( $(ulimit -n) < 12000 )); then
    say "open-files limit is $(ulimit -n); the 10,000-session scenario needs about 11,000 (raise ulimit -Hn)"
fi

exec "$repo/target/release/examples/bench" run "${args[@]}"
