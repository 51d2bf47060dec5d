#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a bounded time each and prints what each run did.
#
#   scripts/fuzz.sh [-t SECONDS] [--seeds] [--merge] [TARGET...]
#
#   -t, --time SECONDS  time per target (default 60, or $FUZZ_TIME)
#   --seeds             (re)write the fixture-derived seeds in fuzz/corpus/ and exit
#   --merge             after each run, add the inputs that reach new coverage to fuzz/corpus/<target>/
#   TARGET...           default: every target (codec_stream codec_ndjson rpc_request blender_reply)
#
# Uses `cargo +nightly fuzz` when a nightly toolchain is installed (sanitizer: cargo-fuzz's
# default, or $FUZZ_SANITIZER), else (or with FUZZ_TOOLCHAIN=stable) stable with
# RUSTC_BOOTSTRAP=1 and `-s none`. Installs
# cargo-fuzz with `cargo install cargo-fuzz --locked` when missing. New inputs go to
# fuzz/work/<target>/ (ignored by git); the committed seeds in fuzz/corpus/<target>/ and
# fuzz/regressions/<target>/ are only read, unless --merge. Crashes land in
# fuzz/artifacts/<target>/; copy each into fuzz/regressions/<target>/ once fixed, so
# tests/fuzz_corpus.rs replays it in CI.
# Exits non-zero when any target found a crash.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="$ROOT/fuzz"
ALL_TARGETS=(codec_stream codec_ndjson rpc_request blender_reply)
TIME="${FUZZ_TIME:-60}"
SEEDS_ONLY=0
MERGE=0
TARGETS=()

while [ $# -gt 0 ]; do
    case "$1" in
        -t | --time) TIME="$2"; shift 2 ;;
        --seeds) SEEDS_ONLY=1; shift ;;
        --merge) MERGE=1; shift ;;
        -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) TARGETS+=("$1"); shift ;;
    esac
done
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")

# Fixture-derived seeds: each wire capture, and requests and replies concatenated, behind codec
# headers (see fuzz/src/lib.rs: byte 0 picks the frame limit and the chunking).
write_seeds() {
    local wire="$ROOT/tests/fixtures/wire" t f name
    for t in codec_stream codec_ndjson; do
        mkdir -p "$FUZZ/corpus/$t"
        rm -f "$FUZZ/corpus/$t"/fixture-*
        for f in "$wire"/*.request "$wire"/*.reply; do
            name="$(basename "$f")"
            # limit 4096, one chunk size of 64 bytes
            { printf '\xc2'; cat "$f"; } >"$FUZZ/corpus/$t/fixture-$name"
            # limit 256, chunks of 7 and 130 bytes in turn
            { printf '\x09\x06\x81'; cat "$f"; } >"$FUZZ/corpus/$t/fixture-$name-256"
        done
        # Every capture back to back (newline-separated for NDJSON), byte-sized reads, limit 4096.
        {
            printf '\x02'
            for f in "$wire"/*.request "$wire"/*.reply; do
                cat "$f"
                [ "$t" = codec_ndjson ] && printf '\n'
            done
        } >"$FUZZ/corpus/$t/fixture-all"
    done
    mkdir -p "$FUZZ/corpus/blender_reply"
    rm -f "$FUZZ/corpus/blender_reply"/fixture-*
    for f in "$wire"/*.reply; do
        cp "$f" "$FUZZ/corpus/blender_reply/fixture-$(basename "$f")"
    done
}

if [ "$SEEDS_ONLY" = 1 ]; then
    write_seeds
    echo "seeds written under fuzz/corpus/"
    exit 0
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz missing; installing it (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi

if [ "${FUZZ_TOOLCHAIN:-}" != stable ] && rustup run nightly rustc --version >/dev/null 2>&1; then
    FUZZ_CMD=(cargo +nightly fuzz)
    SAN=(${FUZZ_SANITIZER:+-s "$FUZZ_SANITIZER"})
    TOOLCHAIN="nightly, sanitizer ${FUZZ_SANITIZER:-address (default)}"
else
    export RUSTC_BOOTSTRAP=1
    FUZZ_CMD=(cargo fuzz)
    SAN=(-s "${FUZZ_SANITIZER:-none}")
    TOOLCHAIN="stable with RUSTC_BOOTSTRAP=1, sanitizer ${FUZZ_SANITIZER:-none}"
fi
# -a: debug assertions and overflow checks on, so arithmetic slips are findings too.
BUILD_FLAGS=(-a "${SAN[@]}")

cd "$FUZZ"
echo "building fuzz targets ($TOOLCHAIN)"
"${FUZZ_CMD[@]}" build "${BUILD_FLAGS[@]}"

LOGDIR="$FUZZ/work/logs"
mkdir -p "$LOGDIR"
SUMMARY=()
FAILED=0
for t in "${TARGETS[@]}"; do
    mkdir -p "$FUZZ/work/$t" "$FUZZ/corpus/$t" "$FUZZ/artifacts/$t"
    log="$LOGDIR/$t.log"
    before=$(find "$FUZZ/artifacts/$t" -type f | wc -l)
    echo "== $t: ${TIME}s"
    status=0
    # Codec inputs over 8 KiB only slow the search: the frame limits that can be exceeded are
    # 16 B, 256 B and 4 KiB (the fourth, 64 KiB, is the no-limit-reached case).
    case "$t" in codec_*) len=(-max_len=8192) ;; *) len=() ;; esac
    seeds=("$FUZZ/corpus/$t")
    [ -d "$FUZZ/regressions/$t" ] && seeds+=("$FUZZ/regressions/$t")
    "${FUZZ_CMD[@]}" run "${BUILD_FLAGS[@]}" "$t" "$FUZZ/work/$t" "${seeds[@]}" -- \
        -max_total_time="$TIME" -dict="$FUZZ/dict/json.dict" -print_final_stats=1 "${len[@]}" \
        -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1 || status=$?
    after=$(find "$FUZZ/artifacts/$t" -type f | wc -l)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    corpus=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    findings=$((after - before))
    if [ "$status" != 0 ] || [ "$findings" -gt 0 ]; then
        FAILED=1
        echo "   FOUND a failing input (exit $status); see $log and fuzz/artifacts/$t/"
        grep -m5 -E 'panicked|ERROR|Test unit written' "$log" || true
    fi
    if [ "$MERGE" = 1 ]; then
        # libFuzzer's merge adds to the first directory only inputs that reach new coverage.
        "${FUZZ_CMD[@]}" run "${BUILD_FLAGS[@]}" "$t" "$FUZZ/corpus/$t" "$FUZZ/work/$t" -- \
            -merge=1 -dict="$FUZZ/dict/json.dict" >"$LOGDIR/$t.merge.log" 2>&1 ||
            echo "   merge failed; see $LOGDIR/$t.merge.log"
    fi
    line=$(printf '%-14s %6ss %12s execs %8s exec/s  cov %6s  corpus %6s  findings %s' \
        "$t" "$TIME" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${corpus:-?}" "$findings")
    echo "   $line"
    SUMMARY+=("$line")
done

echo
echo "fuzz run summary ($TOOLCHAIN, $(date -u +%Y-%m-%dT%H:%MZ)):"
printf '  %s\n' "${SUMMARY[@]}"
exit "$FAILED"
