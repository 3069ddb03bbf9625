#!/usr/bin/env bash
# The benchmark: builds, installs valgrind and wrk if missing, runs
# bench/bench.py and writes its table into the README.
#
#   bash bench/run.sh           the vendored nginx 1.28 (built --with-debug),
#                               README section "bench"
#   bash bench/run.sh --distro  Debian's own /usr/sbin/nginx with the module
#                               built against its nginx-dev, README section
#                               "bench-distro"
#
# Further arguments go to bench.py (e.g. --rounds 5 --seconds 10).
source "$(dirname "$0")/../scripts/lib.sh"
need_packages "${BUILD_PACKAGES[@]}" valgrind wrk python3
rm -rf "$WORK/bench"
if [ "${1:-}" = --distro ]; then
    shift
    need_distro_nginx
    module=$(build_distro)
    build_go
    /usr/bin/python3 "$ROOT/bench/bench.py" --readme --marker bench-distro --nginx /usr/sbin/nginx \
        --module "$module" --build "Debian's package, no \`--with-debug\`" --no-where "$@"
else
    build_all
    /usr/bin/python3 "$ROOT/bench/bench.py" --readme "$@"
fi
