#!/usr/bin/env bash
# Soak test of the manager (not in CI): builds the release manager and the soak
# driver (examples/soak.rs), then runs a mixed workload for N minutes (default 10)
# against the release binary and a mock addon in its own process — callers with
# instant, slow, bulky commands and jobs, random caller disconnects, session churn,
# and a backend restart every few minutes. It prints latency p50/p99 per minute, the
# manager's RSS and a summary, and exits 1 if a budget is broken (instant p99 over
# 50 ms in any minute, slow p99 over the mock's delay + 50 ms, RSS over 512 MiB), on
# an unexpected error or mismatched reply, or when a gauge is not back to zero once
# every session is closed.
#
# Usage: scripts/soak.sh [--minutes N] [options of `soak run`]
#   e.g. scripts/soak.sh --minutes 2 --restart-every 45
#   Every option: target/release/examples/soak run --help (after one run or build).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

minutes=10
args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --minutes) minutes="${2:?--minutes needs a value}"; shift 2 ;;
        --minutes=*) minutes="${1#*=}"; shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) args+=("$1"); shift ;;
    esac
done

echo "== building the release manager and the soak driver" >&2
cargo build --release --quiet --bin blender-session-manager --example soak

exec target/release/examples/soak run \
    --manager-bin target/release/blender-session-manager \
    --minutes "$minutes" ${args[@]+"${args[@]}"}
