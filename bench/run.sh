#!/usr/bin/env bash
# The benchmark: builds, installs valgrind, wrk and haproxy if missing, runs
# bench/bench.py and writes its tables into docs/performance.md.
#
#   bash bench/run.sh           the vendored nginx 1.28 built without
#                               --with-debug (as nginx.org's packages
#                               build their nginx; the headline, with HAProxy on
#                               the same workloads for context), section
#                               "bench" of docs/performance.md, then the same
#                               built --with-debug, section "bench-debug"
#   bash bench/run.sh --distro  Debian's own /usr/sbin/nginx with the module
#                               built against its nginx-dev, section
#                               "bench-distro"
#   bash bench/run.sh --stream  the stream module per TCP or UDP session
#                               (bench/stream_bench.py, the vendored
#                               build without --with-debug), section
#                               "bench-stream"
#   bash bench/run.sh --all     all of the above
#
# Further arguments go to bench.py (e.g. --rounds 5 --seconds 10).
source "$(dirname "$0")/../scripts/lib.sh"
need_packages "${BUILD_PACKAGES[@]}" valgrind wrk haproxy python3
rm -rf "$WORK/bench"
what=vendored
case "${1:-}" in
    --distro) what=distro; shift ;;
    --stream) what=stream; shift ;;
    --all) what=all; shift ;;
esac
if [ "$what" = stream ] || [ "$what" = all ]; then
    build_all
    build_nodebug
    /usr/bin/python3 "$ROOT/bench/stream_bench.py" --write --nginx "$WORK/nodebug/nginx" \
        --module "$WORK/nodebug/ngx_stream_upstream_cause_module.so" --build "the vendored build"
fi
[ "$what" = stream ] && exit 0
if [ "$what" != distro ]; then
    build_all
    build_nodebug
    /usr/bin/python3 "$ROOT/bench/bench.py" --write --marker bench --haproxy --nginx "$WORK/nodebug/nginx" \
        --module "$WORK/nodebug/ngx_http_upstream_cause_module.so" --build "the vendored build" "$@"
    /usr/bin/python3 "$ROOT/bench/bench.py" --write --marker bench-debug "$@"
fi
if [ "$what" != vendored ]; then
    need_distro_nginx
    module=$(build_distro)
    build_go
    /usr/bin/python3 "$ROOT/bench/bench.py" --write --marker bench-distro --nginx /usr/sbin/nginx \
        --module "$module" --build "Debian's package" --no-where "$@"
fi
