#!/usr/bin/env bash
# The whole test suite: checks, unit tests of the pure core, and the
# integration tests (real nginx + the module + real upstreams on loopback).
# Installs the system packages it needs. Exits non-zero on any failure.
#
# UPSTREAM_CAUSE_NGINX picks the nginx the integration tests run:
#   vendored (default)  the ngx crate's nginx 1.28, built here, with all checks
#   distro              the distro's own /usr/sbin/nginx (Debian's nginx and
#                       nginx-dev, installed if missing), the module built
#                       in nginx-dev's tree by nginx's own build
#                       (--add-dynamic-module), Debian's Lua module beside
#                       it; integration tests only
#   nginx-org           nginx 1.28.3 built with nginx.org's packages'
#                       configure arguments (pkg-oss), the module built
#                       separately with them through --add-dynamic-module;
#                       integration tests only
# Arguments go to pytest.
source "$(dirname "$0")/lib.sh"

case "${UPSTREAM_CAUSE_NGINX:-vendored}" in
vendored)
    need_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
    need_python_libs
    need_rust_tools
    build_all

    say "format and lints"
    # (the workspace's run lints both modules' code in one build; the
    # stream module's own build, without the HTTP module, too)
    (cd "$ROOT" && cargo fmt --all --check && cargo clippy --release --locked --workspace --all-targets -- -D warnings &&
        cargo clippy --release --locked -p ngx-stream-upstream-cause -- -D warnings)

    say "unit tests (pure core, offline classifier)"
    (cd "$ROOT" && cargo test --release --locked -p upstream-cause-core -p upstream-cause)

    NGINX_BIN="$WORK/bin/nginx"
    MODULE="$WORK/modules/ngx_http_upstream_cause_module.so"
    ;;
distro)
    need_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
    need_python_libs
    need_distro_nginx
    # lua-nginx-module's balancer_by_lua beside the module (tests/test_lua_balancer.py)
    need_packages "${DISTRO_LUA_PACKAGES[@]}"
    need_cargo
    say "building the module in nginx-dev's tree (./configure --add-dynamic-module, make modules) for $(/usr/sbin/nginx -v 2>&1 | sed 's/^nginx version: //')"
    MODULE=$(build_distro)
    build_go
    build_cli
    NGINX_BIN=/usr/sbin/nginx
    # tests/test_build.py: nginx refuses a module built for another version
    # (the vendored 1.28.3 build, when scripts/test.sh made one here)
    if [ -e "$WORK/modules/ngx_http_upstream_cause_module.so" ] &&
        [ "$("$NGINX_BIN" -v 2>&1)" != "nginx version: nginx/1.28.3" ]; then
        export OTHER_VERSION_MODULE
        OTHER_VERSION_MODULE=$(readlink -f "$WORK/modules/ngx_http_upstream_cause_module.so")
    fi
    ;;
nginx-org)
    need_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
    need_python_libs
    need_cargo
    (cd "$ROOT" && cargo fetch --locked >/dev/null)
    say "building nginx as nginx.org's packages do (pkg-oss's configure arguments), and the module separately with --add-dynamic-module"
    built=$(build_nginx_org)
    NGINX_BIN=$(sed -n 1p <<<"$built")
    MODULE=$(sed -n 2p <<<"$built")
    # tests/test_build.py: that nginx without --with-compat refuses the module
    export NOCOMPAT_NGINX
    NOCOMPAT_NGINX=$(sed -n 3p <<<"$built")
    # tests/test_build.py configures a copy of this tree
    export NGINX_SOURCE_TREE
    NGINX_SOURCE_TREE=$(vendored_nginx_source)
    build_go
    build_cli
    ;;
*)
    echo "UPSTREAM_CAUSE_NGINX must be vendored, distro or nginx-org" >&2
    exit 2
    ;;
esac

say "integration tests against $("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //') ($NGINX_BIN)"
cd "$ROOT"
NGINX_BIN="$NGINX_BIN" \
UPSTREAM_CAUSE_MODULE="$MODULE" \
UPSTREAM_CAUSE_STREAM_MODULE="$(dirname "$MODULE")/ngx_stream_upstream_cause_module.so" \
GO_SERVICE="$WORK/bin/go-service" \
UPSTREAM_CAUSE_CLI="$WORK/bin/upstream-cause" \
    /usr/bin/python3 -m pytest -p no:cacheprovider -q tests "$@"
