#!/usr/bin/env bash
# The whole test suite: checks, unit tests of the pure core, and the
# integration tests (real nginx + the module + real upstreams on loopback).
# Installs the system packages it needs. Exits non-zero on any failure.
source "$(dirname "$0")/lib.sh"

need_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
need_rust_tools
build_all

say "format and lints"
(cd "$ROOT" && cargo fmt --all --check && cargo clippy --release --locked --all-targets -- -D warnings)

say "unit tests (pure core)"
(cd "$ROOT" && cargo test --release --locked -p upstream-cause-core)

say "integration tests"
cd "$ROOT"
NGINX_BIN="$WORK/bin/nginx" \
UPSTREAM_CAUSE_MODULE="$WORK/modules/ngx_http_upstream_cause_module.so" \
GO_SERVICE="$WORK/bin/go-service" \
    /usr/bin/python3 -m pytest -p no:cacheprovider -q tests "$@"
