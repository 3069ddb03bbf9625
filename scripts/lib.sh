# Shared helpers for the scripts: sourced, not run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK="$ROOT/.work"
mkdir -p "$WORK/bin" "$WORK/modules"

# Bold only on a terminal, and never with NO_COLOR set (no-color.org).
if [ -z "${NO_COLOR:-}" ] && [ -t 2 ]; then SAY_ON=$'\033[1m' SAY_OFF=$'\033[0m'; else SAY_ON='' SAY_OFF=''; fi
say() { printf '%s==> %s%s\n' "$SAY_ON" "$*" "$SAY_OFF" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else echo "need root to run: $*" >&2; return 1
    fi
}

# Installs the Debian/Ubuntu packages given, if any is missing.
need_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null; then
        echo "missing system packages (install them with your package manager): ${missing[*]}" >&2
        return 1
    fi
    say "installing ${missing[*]}"
    as_root apt-get update -qq
    # Packages with a service (nginx, php-fpm) must not start it: the tests
    # run their own instances. policy-rc.d says no while they install.
    local policy=/usr/sbin/policy-rc.d guard=""
    if [ ! -e "$policy" ] && [ "$(id -u)" = 0 ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && guard=1
    fi
    local rc=0
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
    [ -z "$guard" ] || rm -f "$policy"
    return "$rc"
}

# What building the module and the vendored nginx needs.
BUILD_PACKAGES=(gcc make libclang-dev libpcre2-dev zlib1g-dev libssl-dev golang-go curl ca-certificates)
# What the test suite needs on top.
# (php-fpm: a real PHP-FPM pool on a unix socket; python3-grpcio: a real gRPC
# server; python3-hpack: decodes nginx's HTTP/2 request headers in the
# HTTP/2 fault upstream; prometheus: promtool and a real Prometheus for
# contrib/'s alert rules and dashboard; python3-pip: see need_python_libs;
# time: GNU time, the offline classifier's peak RSS; redis-server,
# redis-tools and bind9-dnsutils: a real Redis with redis-cli, and dig,
# behind nginx's stream proxy)
TEST_PACKAGES=(python3 python3-pytest python3-prometheus-client iproute2 procps openssl
    php-fpm python3-grpcio python3-hpack prometheus python3-pip time redis-server redis-tools bind9-dnsutils
    runit s6 chromium)

# PyPI packages the tests use that Debian does not ship, under .work/pylib
# (tests/conftest.py puts it on the path): http-sf, a Structured Fields
# parser (RFC 9651) no one here wrote, for Proxy-Status.
PYPI_TEST_LIBS=(http-sf==1.5.0)
need_python_libs() {
    [ -f "$WORK/pylib/.installed" ] && [ "$(cat "$WORK/pylib/.installed")" = "${PYPI_TEST_LIBS[*]}" ] && return 0
    say "installing ${PYPI_TEST_LIBS[*]} from PyPI into .work/pylib"
    rm -rf "$WORK/pylib"
    /usr/bin/python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
        --target "$WORK/pylib" "${PYPI_TEST_LIBS[@]}"
    echo "${PYPI_TEST_LIBS[*]}" >"$WORK/pylib/.installed"
}

need_cargo() {
    command -v cargo >/dev/null || { echo "cargo not found: install a Rust toolchain (rustup, or Debian trixie's cargo), 1.85 or newer" >&2; return 1; }
}

# The test suite also checks formatting and lints.
need_rust_tools() {
    need_cargo
    cargo fmt --version >/dev/null 2>&1 || { echo "rustfmt not found: rustup component add rustfmt" >&2; return 1; }
    cargo clippy --version >/dev/null 2>&1 || { echo "clippy not found: rustup component add clippy" >&2; return 1; }
}

# Builds the module and the matching vendored nginx (release), and the Go
# service; links the results under .work/.
build_all() {
    need_cargo
    say "building the module and nginx (cargo build --release)"
    (cd "$ROOT" && cargo build --release --locked)
    # the stream module: its own cargo run (one would put both modules'
    # code in each .so, see src/lib.rs)
    say "building the stream module (cargo build --release -p ngx-stream-upstream-cause)"
    (cd "$ROOT" && cargo build --release --locked -p ngx-stream-upstream-cause)
    ln -sf "$ROOT/target/release/libngx_stream_upstream_cause_module.so" "$WORK/modules/ngx_stream_upstream_cause_module.so"
    local so="$ROOT/target/release/libngx_http_upstream_cause_module.so"
    local nginx
    nginx=$(ls -t "$ROOT"/target/release/build/nginx-sys-*/out/objs/nginx 2>/dev/null | head -1)
    [ -x "$nginx" ] || { echo "vendored nginx binary not found under target/release/build" >&2; return 1; }
    ln -sf "$so" "$WORK/modules/ngx_http_upstream_cause_module.so"
    ln -sf "$nginx" "$WORK/bin/nginx"
    build_go
    build_cli
}

# The same module and vendored nginx without --with-debug, as distro and
# nginx.org packages build nginx (the benchmark's headline build), in a
# target directory of their own; linked under .work/nodebug/.
build_nodebug() {
    need_cargo
    say "building the module and nginx without --with-debug (target/nodebug)"
    (cd "$ROOT" && NGX_CONFIGURE_ARGS="--with-http_auth_request_module" CARGO_TARGET_DIR="$ROOT/target/nodebug" \
        cargo build --release --locked -p ngx-upstream-cause)
    (cd "$ROOT" && NGX_CONFIGURE_ARGS="--with-http_auth_request_module" CARGO_TARGET_DIR="$ROOT/target/nodebug" \
        cargo build --release --locked -p ngx-stream-upstream-cause)
    local nginx
    nginx=$(ls -t "$ROOT"/target/nodebug/release/build/nginx-sys-*/out/objs/nginx 2>/dev/null | head -1)
    [ -x "$nginx" ] || { echo "nginx binary not found under target/nodebug/release/build" >&2; return 1; }
    mkdir -p "$WORK/nodebug"
    ln -sf "$ROOT/target/nodebug/release/libngx_http_upstream_cause_module.so" "$WORK/nodebug/ngx_http_upstream_cause_module.so"
    ln -sf "$ROOT/target/nodebug/release/libngx_stream_upstream_cause_module.so" "$WORK/nodebug/ngx_stream_upstream_cause_module.so"
    ln -sf "$nginx" "$WORK/nodebug/nginx"
}

build_go() {
    say "building the Go service"
    (cd "$ROOT/docker/go-service" && GOFLAGS=-mod=mod go build -o "$WORK/bin/go-service" .)
}

# The offline classifier (cli/): the same core, no nginx.
build_cli() {
    need_cargo
    say "building the offline classifier (upstream-cause)"
    (cd "$ROOT" && cargo build --release --locked -p upstream-cause)
    ln -sf "$ROOT/target/release/upstream-cause" "$WORK/bin/upstream-cause"
}

# Against an installed distro nginx: Debian's/Ubuntu's nginx-dev ships the
# configured source in /usr/share/nginx/src with its configure flags; nginx's
# configure is run on a copy (objs/ is what the bindings need), then cargo
# builds without the vendored nginx.
DISTRO_PACKAGES=(nginx nginx-dev libnginx-mod-stream libclang-dev gcc make)
# lua-nginx-module as the distro packages it (with NDK and lua-resty-core):
# how ingress-nginx, Kong and APISIX pick peers (balancer_by_lua)
DISTRO_LUA_PACKAGES=(libnginx-mod-http-lua)
DISTRO_SRC=/usr/share/nginx/src

# Installs the distro's nginx and nginx-dev if missing, without starting the
# nginx service (the tests run their own instances).
need_distro_nginx() {
    need_packages "${DISTRO_PACKAGES[@]}"
}

configure_distro_nginx() {  # dir: where to configure the copy
    local dir=$1
    [ -f "$DISTRO_SRC/conf_flags" ] || { echo "$DISTRO_SRC/conf_flags not found: install nginx-dev" >&2; return 1; }
    rm -rf "$dir"
    cp -r "$DISTRO_SRC" "$dir"
    # shellcheck disable=SC1091
    (cd "$dir" && source ./conf_flags && ./configure "${NGX_CONF_FLAGS[@]}" >configure.log 2>&1) || {
        tail -20 "$dir/configure.log" >&2
        return 1
    }
}

# nginx's configure: ./configure in release tarballs and nginx-dev's tree,
# auto/configure in nginx's repository layout (as nginx-src ships it).
ngx_configure() {
    if [ -x ./configure ]; then ./configure "$@"; else ./auto/configure "$@"; fi
}

# nginx's own build of the module, as packagers run it: in a copy of an
# nginx source tree, ./configure with the given arguments and
# --add-dynamic-module=<this checkout> (the `config` at its root), then
# `make modules`. Prints the path of the built module.
build_with_configure() {  # source tree, work dir, configure arguments...
    local src=$1 dir=$2
    shift 2
    rm -rf "$dir"
    mkdir -p "$(dirname "$dir")"
    cp -r "$src" "$dir"
    (cd "$dir" && ngx_configure "$@" --add-dynamic-module="$ROOT" >configure.log 2>&1) || {
        tail -20 "$dir/configure.log" >&2
        return 1
    }
    # objs/Makefile directly: nginx-dev's trimmed tree writes no top Makefile
    (cd "$dir" && make -f objs/Makefile -j"$(nproc)" modules >make.log 2>&1) || {
        tail -30 "$dir/make.log" >&2
        return 1
    }
    echo "$dir/objs/ngx_http_upstream_cause_module.so"
}

# The module for the distro's own nginx, built the way Debian's packages
# build modules: nginx-dev's source tree, Debian's configure flags, nginx's
# own build with --add-dynamic-module. Prints the path of the module.
build_distro() {  # work dir
    local dir=${1:-$WORK/distro-build}
    [ -f "$DISTRO_SRC/conf_flags" ] || { echo "$DISTRO_SRC/conf_flags not found: install nginx-dev" >&2; return 1; }
    local -a NGX_CONF_FLAGS
    # shellcheck disable=SC1091
    source "$DISTRO_SRC/conf_flags"
    # nginx-dev's flags have no stream (Debian's stream is a module of its
    # own, libnginx-mod-stream): with it, the tree builds the stream module
    # too, as debian/rules does
    build_with_configure "$DISTRO_SRC" "$dir" "${NGX_CONF_FLAGS[@]}" --with-stream --with-stream_ssl_module
}

# The nginx source the ngx crate vendors (nginx-src, 1.28.3), from cargo's
# registry (fetched by the first cargo build).
vendored_nginx_source() {
    local manifest
    manifest=$(cd "$ROOT" && cargo metadata --format-version 1 --locked 2>/dev/null |
        /usr/bin/python3 -c 'import json, sys
print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "nginx-src"))')
    [ -d "$(dirname "$manifest")/nginx/src" ] || { echo "nginx-src not found in cargo's registry" >&2; return 1; }
    echo "$(dirname "$manifest")/nginx"
}

# nginx.org's packages' configure arguments (nginx/pkg-oss, debian/Makefile,
# BASE_CONFIGURE_ARGS), with the paths moved under PREFIX and without the
# nginx user (the tests run nginx as the user they run as).
nginx_org_configure_args() {  # prefix
    local p=$1
    echo --prefix="$p" --sbin-path="$p/sbin/nginx" --modules-path="$p/modules" \
        --conf-path="$p/conf/nginx.conf" --error-log-path="$p/logs/error.log" \
        --http-log-path="$p/logs/access.log" --pid-path="$p/logs/nginx.pid" --lock-path="$p/logs/nginx.lock" \
        --http-client-body-temp-path="$p/cache/client_temp" --http-proxy-temp-path="$p/cache/proxy_temp" \
        --http-fastcgi-temp-path="$p/cache/fastcgi_temp" --http-uwsgi-temp-path="$p/cache/uwsgi_temp" \
        --http-scgi-temp-path="$p/cache/scgi_temp"
    nginx_org_with_args
}

# nginx.org's packages' own paths and user (pkg-oss), for the stand-in of
# the official image (scripts/official-image-test.sh).
nginx_org_package_configure_args() {
    echo --prefix=/etc/nginx --sbin-path=/usr/sbin/nginx --modules-path=/usr/lib/nginx/modules \
        --conf-path=/etc/nginx/nginx.conf --error-log-path=/var/log/nginx/error.log \
        --http-log-path=/var/log/nginx/access.log --pid-path=/run/nginx.pid --lock-path=/run/nginx.lock \
        --http-client-body-temp-path=/var/cache/nginx/client_temp \
        --http-proxy-temp-path=/var/cache/nginx/proxy_temp \
        --http-fastcgi-temp-path=/var/cache/nginx/fastcgi_temp \
        --http-uwsgi-temp-path=/var/cache/nginx/uwsgi_temp \
        --http-scgi-temp-path=/var/cache/nginx/scgi_temp --user=nginx --group=nginx
    nginx_org_with_args
}

# The modules nginx.org's packages build in (pkg-oss's BASE_CONFIGURE_ARGS).
nginx_org_with_args() {
    echo --with-compat --with-file-aio --with-threads --with-http_addition_module \
        --with-http_auth_request_module --with-http_dav_module --with-http_flv_module \
        --with-http_gunzip_module --with-http_gzip_static_module --with-http_mp4_module \
        --with-http_random_index_module --with-http_realip_module --with-http_secure_link_module \
        --with-http_slice_module --with-http_ssl_module --with-http_stub_status_module \
        --with-http_sub_module --with-http_v2_module --with-http_v3_module --with-mail \
        --with-mail_ssl_module --with-stream --with-stream_realip_module --with-stream_ssl_module \
        --with-stream_ssl_preread_module
}

# nginx.org's build of the vendored version: nginx itself with pkg-oss's
# arguments, and, separately, the module with the same arguments through
# --add-dynamic-module, as pkg-oss's build_module.sh builds one; and the
# same version configured without --with-compat. Prints the nginx binary,
# the module and the binary without --with-compat, one a line.
build_nginx_org() {
    local src dir=$WORK/nginx-org
    src=$(vendored_nginx_source)
    # shellcheck disable=SC2046
    set -- $(nginx_org_configure_args "$dir/install")
    if [ ! -x "$dir/install/sbin/nginx" ]; then
        rm -rf "$dir/nginx"
        mkdir -p "$dir"
        cp -r "$src" "$dir/nginx"
        (cd "$dir/nginx" && ngx_configure "$@" >configure.log 2>&1 && make -j"$(nproc)" >make.log 2>&1 &&
            make install >install.log 2>&1) || {
            tail -30 "$dir"/nginx/*.log >&2
            return 1
        }
    fi
    # nginx makes its temp directories, not their parent
    mkdir -p "$dir/install/cache"
    # the same version without --with-compat: another module signature
    if [ ! -x "$dir/nocompat/objs/nginx" ]; then
        rm -rf "$dir/nocompat"
        cp -r "$src" "$dir/nocompat"
        (cd "$dir/nocompat" && ngx_configure --without-http_rewrite_module --without-http_gzip_module \
            >configure.log 2>&1 && make -j"$(nproc)" >make.log 2>&1) || {
            tail -30 "$dir"/nocompat/*.log >&2
            return 1
        }
    fi
    local module
    module=$(build_with_configure "$src" "$dir/module" "$@")
    echo "$dir/install/sbin/nginx"
    echo "$module"
    echo "$dir/nocompat/objs/nginx"
}

# sid's Release file is valid for a week only: apt refuses a mirror whose
# copy is older ("Release file ... is expired"). Prints false when the
# mirror's Valid-Until is past (apt is then told not to check the date; the
# signatures are checked either way), true otherwise.
apt_check_valid_until() {  # suite
    local mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian} until
    until=$(curl -fsS -m 20 "$mirror/dists/$1/Release" 2>/dev/null | sed -n 's/^Valid-Until: //p' || true)
    if [ -n "$until" ] && [ "$(date -u -d "$until" +%s 2>/dev/null || echo 0)" -lt "$(date -u +%s)" ]; then
        say "the mirror's $1 Release expired on $until: apt will not check Valid-Until"
        echo false
    else
        echo true
    fi
}

# Docker, or exactly what is missing (a missing client, or a daemon that does
# not answer).
need_docker() {  # what needs it
    if ! command -v docker >/dev/null; then
        echo "$1 needs Docker, and \`docker\` is not on PATH: install Docker Engine (Debian: apt-get install docker.io)" >&2
        return 1
    fi
    local err
    if ! err=$(docker version --format '{{.Server.Version}}' 2>&1 >/dev/null); then
        echo "$1 needs Docker, and the Docker daemon does not answer: ${err%%$'\n'*}" >&2
        return 1
    fi
}

# The crates, vendored on the host for the builds in containers (they cannot
# reach crates.io here). Without cargo on the host, what is there is used.
vendor_crates() {
    if command -v cargo >/dev/null; then
        say "vendoring crates for the container builds (cargo vendor)"
        (cd "$ROOT" && cargo vendor --locked --versioned-dirs --no-delete docker/cargo-vendor) \
            >"$WORK/vendor.log" 2>&1 || { cat "$WORK/vendor.log" >&2; return 1; }
    fi
}

# Builds an image quietly; on failure shows the end of the log.
docker_build() {  # log name, then docker build arguments
    local log="$WORK/$1.log"
    shift
    DOCKER_BUILDKIT=0 docker build "$@" >"$log" 2>&1 || {
        tail -40 "$log" >&2
        echo "image build failed (whole log: $log)" >&2
        return 1
    }
}

# The Debian suites the package is built for, with the version of each.
DEB_SUITES=(bookworm trixie sid)
# The binary packages built from it: the two modules, and the offline classifier.
DEB_PACKAGES=(libnginx-mod-http-upstream-cause libnginx-mod-stream-upstream-cause upstream-cause)
# What the packages are built from: the module's and the classifier's
# sources (the workspace's members: cargo reads all of them), their build
# glue, the packaging and the docs it installs.
DEB_SOURCES=(Cargo.toml Cargo.lock build.rs config config.make auto core src cli stream debian README.md CHANGELOG.md docs
    docker/deb/build.sh)
deb_version() {  # suite
    local v
    v=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)
    echo "$v+$1"
}

# A suite's base image, then its package build environment
# (docker/deb/Dockerfile).
deb_build_image() {  # suite
    bash "$ROOT/docker/base-image.sh" "$1"
    docker_build "deb-image-$1" --build-arg SUITE="$1" \
        --build-arg APT_CHECK_VALID_UNTIL="$(apt_check_valid_until "$1")" \
        -t "ngx-upstream-cause/deb-build:$1" -f "$ROOT/docker/deb/Dockerfile" "$ROOT/debian"
}

# Makes the packages of the suites given (scripts/deb.sh), unless dist/ has
# each of them (the module's and the classifier's) newer than everything
# they are built from.
ensure_debs() {  # suite...
    local stale=() s deb pkg
    for s in "$@"; do
        for pkg in "${DEB_PACKAGES[@]}"; do
            deb=$(ls -t "$ROOT/dist/$s/${pkg}_"*.deb 2>/dev/null | head -1 || true)
            if [ -z "$deb" ] || [ -n "$(cd "$ROOT" && find "${DEB_SOURCES[@]}" -newer "$deb" -print -quit)" ]; then
                stale+=("$s")
                break
            fi
        done
    done
    [ ${#stale[@]} -eq 0 ] || bash "$ROOT/scripts/deb.sh" "${stale[@]}"
}
