#!/usr/bin/env bash
# The whole test suite: checks, unit tests of the pure core, and the
# integration tests (real nginx + the module + real upstreams on loopback).
# Installs the system packages it needs. Exits non-zero on any failure.
#
# UPSTREAM_CAUSE_NGINX picks the nginx the integration tests run:
#   vendored (default)  the ngx crate's nginx 1.28, built here, with all checks
#   distro              the distro's own /usr/sbin/nginx (Debian's nginx and
#                       nginx-dev, installed if missing), the module built
#                       against it; integration tests only
# Arguments go to pytest.
source "$(dirname "$0")/lib.sh"

case "${UPSTREAM_CAUSE_NGINX:-vendored}" in
vendored)
    need_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
    need_rust_tools
    build_all

    say "format and lints"
    (cd "$ROOT" && cargo fmt --all --check && cargo clippy --release --locked --all-targets -- -D warnings)

    say "unit tests (pure core)"
    (cd "$ROOT" && cargo test --release --locked -p upstream-cause-core)

    NGINX_BIN="$WORK/bin/nginx"
    MODULE="$WORK/modules/ngx_http_upstream_cause_module.so"
    ;;
distro)
    need_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
    need_distro_nginx
    need_cargo
    say "building the module against $(/usr/sbin/nginx -v 2>&1 | sed 's/^nginx version: //')"
    MODULE=$(build_distro)
    build_go
    NGINX_BIN=/usr/sbin/nginx
    ;;
*)
    echo "UPSTREAM_CAUSE_NGINX must be vendored or distro" >&2
    exit 2
    ;;
esac

say "integration tests against $("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //') ($NGINX_BIN)"
cd "$ROOT"
NGINX_BIN="$NGINX_BIN" \
UPSTREAM_CAUSE_MODULE="$MODULE" \
GO_SERVICE="$WORK/bin/go-service" \
    /usr/bin/python3 -m pytest -p no:cacheprovider -q tests "$@"
