#!/usr/bin/env bash
# The offline classifier's benchmark: builds upstream-cause, generates a
# 1 GiB nginx error log (.work/bench-cli/, reused by later runs), times
# `upstream-cause summary` and `requests` on one core against `wc -l` and
# `grep -c upstream` on the same file, measures peak RSS, and writes the
# table into docs/performance.md (section "bench-cli").
#
# Arguments go to bench/cli_bench.py (--size BYTES, --rounds N).
source "$(dirname "$0")/../scripts/lib.sh"
need_packages python3 time util-linux grep coreutils valgrind
build_cli
/usr/bin/python3 "$ROOT/bench/cli_bench.py" --write "$@"
