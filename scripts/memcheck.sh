#!/usr/bin/env bash
# The module under memory checkers, with real nginx and real upstreams:
#
#   asan      nginx 1.28.3 (the ngx crate's vendored source) built with
#             AddressSanitizer and NGX_DEBUG_PALLOC (every pool allocation
#             is its own malloc, so a pool overrun, a use after the pool is
#             destroyed or a read of freed pool memory is a report), the
#             module built against it and loaded; the integration tests and
#             the storm run against it.
#   valgrind  the release nginx and module under valgrind memcheck (master
#             and worker, --trace-children for the binary upgrade's exec);
#             the storm and most integration test files run under it.
#
# Usage: scripts/memcheck.sh [asan|valgrind|all] [pytest arguments...]
# MEMCHECK_LONG=1 runs the longer storms (asan: 30,000 requests over 300 s;
# valgrind: 3,000 over 300 s, one worker) instead of the CI-sized ones.
# Exits non-zero on any report, or on a failing test. Reports stay in
# .work/memcheck/<mode>/.
source "$(dirname "$0")/lib.sh"

mode=${1:-all}
[ $# -gt 0 ] && shift

# What the checkers run: every integration test but the build tests (they
# build nginx trees of their own); the configuration fuzzing (nginx -t
# alone) runs under AddressSanitizer only, 300 variants.
SELECT="not test_build"

# The storm's size under each checker (MEMCHECK_LONG=1: the longer run).
storm_args() {  # asan|valgrind
    case "$1/${MEMCHECK_LONG:-}" in
    asan/) echo "--requests 3000 --seconds 30" ;;
    asan/*) echo "--requests 30000 --seconds 300" ;;
    valgrind/) echo "--requests 600 --seconds 60 --workers 1" ;;
    valgrind/*) echo "--requests 3000 --seconds 300 --workers 1" ;;
    esac
}

run_asan() {
    local out="$WORK/memcheck/asan"
    rm -rf "$out" && mkdir -p "$out"
    say "building nginx with AddressSanitizer and NGX_DEBUG_PALLOC, and the module against it"
    (cd "$ROOT" && NGX_CFLAGS="-fsanitize=address -fno-omit-frame-pointer -DNGX_DEBUG_PALLOC=1 -g -O1" \
        NGX_LDFLAGS="-fsanitize=address" cargo build --release --locked --target-dir target/asan)
    # the stream module, against the same nginx (its own cargo run)
    (cd "$ROOT" && NGX_CFLAGS="-fsanitize=address -fno-omit-frame-pointer -DNGX_DEBUG_PALLOC=1 -g -O1" \
        NGX_LDFLAGS="-fsanitize=address" cargo build --release --locked --target-dir target/asan \
        -p ngx-stream-upstream-cause)
    local nginx
    nginx=$(ls -t "$ROOT"/target/asan/release/build/nginx-sys-*/out/objs/nginx | head -1)
    local so="$ROOT/target/asan/release/libngx_http_upstream_cause_module.so"
    local stream_so="$ROOT/target/asan/release/libngx_stream_upstream_cause_module.so"
    ldd "$nginx" | grep libasan >/dev/null || { echo "$nginx is not linked with libasan" >&2; return 1; }

    # Leak checking is off: nginx never frees its first cycle, by design,
    # and at exit it unloads the module, whose statics held the rest (LSan
    # then sees them as lost). What is looked for is misuse: overruns, use
    # after free, double free.
    export ASAN_OPTIONS="log_path=$out/asan:detect_leaks=0:abort_on_error=0"
    say "integration tests and the storm against the AddressSanitizer build ($nginx)"
    local rc=0
    (cd "$ROOT" && NGINX_BIN="$nginx" UPSTREAM_CAUSE_MODULE="$so" UPSTREAM_CAUSE_STREAM_MODULE="$stream_so" \
        GO_SERVICE="$WORK/bin/go-service" \
        CONF_FUZZ_N=${CONF_FUZZ_N:-300} STORM_ARGS="$(storm_args asan)" \
        /usr/bin/python3 -m pytest -p no:cacheprovider -q tests -k "$SELECT" "$@") || rc=$?
    unset ASAN_OPTIONS
    local reports
    reports=$(find "$out" -name 'asan.*' | wc -l)
    say "AddressSanitizer: $reports reports"
    if [ "$reports" -gt 0 ]; then
        grep -h -A30 'ERROR: AddressSanitizer' "$out"/asan.* | head -200 >&2
        return 1
    fi
    return $rc
}

# Under valgrind (20 to 50 times slower), CI runs the storm and the files
# of the fault kinds, the reporting paths, the counters, the HTTP/2 and
# FastCGI upstreams and the stream module; MEMCHECK_LONG=1 runs every file.
if [ -n "${MEMCHECK_LONG:-}" ]; then
    VALGRIND_TESTS=(tests)
else
    VALGRIND_TESTS=(tests/test_storm.py tests/test_faults.py tests/test_reporting.py tests/test_machinery.py
        tests/test_metrics.py tests/test_status.py tests/test_h2_upstreams.py tests/test_phpfpm.py tests/test_stream.py)
fi

# The first line of each kind of memcheck report.
VALGRIND_ERRORS='^==[0-9]+== (Invalid (read|write|free)|Conditional jump|Use of uninitialised|Syscall param|Mismatched free|Source and destination overlap|Argument .* of function .* has a fishy)'

run_valgrind() {
    local out="$WORK/memcheck/valgrind"
    rm -rf "$out" && mkdir -p "$out"
    need_packages valgrind
    build_all
    say "integration tests and the storm under valgrind memcheck"
    local rc=0
    (cd "$ROOT" && NGINX_BIN="$WORK/bin/nginx" UPSTREAM_CAUSE_MODULE="$WORK/modules/ngx_http_upstream_cause_module.so" \
        UPSTREAM_CAUSE_STREAM_MODULE="$WORK/modules/ngx_stream_upstream_cause_module.so" \
        GO_SERVICE="$WORK/bin/go-service" STORM_ARGS="$(storm_args valgrind)" \
        NGINX_WRAPPER="valgrind --tool=memcheck --trace-children=yes --num-callers=40 --log-file=$out/vg.%p" \
        /usr/bin/python3 -m pytest -p no:cacheprovider -q "${VALGRIND_TESTS[@]}" -k "$SELECT and not conf_fuzz" "$@") ||
        rc=$?
    # Errors are counted from their reports too: a process that was killed
    # (a stop that outwaited its timeout) writes no ERROR SUMMARY.
    local logs procs summed reported
    logs=$(find "$out" -name 'vg.*' | wc -l)
    [ "$logs" -gt 0 ] || { echo "valgrind ran no nginx process" >&2; return 1; }
    procs=$(cat "$out"/vg.* | grep -c 'ERROR SUMMARY' || true)
    summed=$(cat "$out"/vg.* | grep 'ERROR SUMMARY' | awk '{ n += $4 } END { print n + 0 }')
    reported=$(cat "$out"/vg.* | grep -c -E "$VALGRIND_ERRORS" || true)
    say "valgrind: $summed errors summed, $reported reported, in $logs nginx processes ($procs summed up)"
    if [ "$summed" -gt 0 ] || [ "$reported" -gt 0 ]; then
        grep -l -E "ERROR SUMMARY: [1-9]|$VALGRIND_ERRORS" "$out"/vg.* | head -3 | xargs cat >&2
        return 1
    fi
    return $rc
}

case "$mode" in
asan | valgrind | all) ;;
*)
    echo "usage: scripts/memcheck.sh [asan|valgrind|all] [pytest arguments...]" >&2
    exit 2
    ;;
esac
need_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
need_python_libs
need_cargo
# Each step a statement of its own, so that set -e stops at a failed build.
if [ "$mode" != valgrind ]; then
    build_go
    run_asan "$@"
fi
if [ "$mode" != asan ]; then
    run_valgrind "$@"
fi
