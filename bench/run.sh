#!/usr/bin/env bash
# The benchmark: builds, installs valgrind and wrk if missing, runs
# bench/bench.py and writes its table into the README. Arguments go to
# bench.py (e.g. --rounds 5 --seconds 10).
source "$(dirname "$0")/../scripts/lib.sh"
need_packages "${BUILD_PACKAGES[@]}" valgrind wrk python3
build_all
rm -rf "$WORK/bench"
/usr/bin/python3 "$ROOT/bench/bench.py" --readme "$@"
