#!/usr/bin/env bash
# `make deb`: the Debian packages libnginx-mod-http-upstream-cause, one per
# suite (default: bookworm trixie sid), each built with its suite's
# dh-sequence-nginx (nginx-dev) and Rust in a clean container of that suite,
# left under dist/<suite>/.
#
# Each suite's build environment is an image (docker/deb/Dockerfile: the base
# image from docker/base-image.sh plus apt-get build-dep), reused while
# debian/control is unchanged; the build runs in a throwaway container of it,
# with the source and the crates vendored on the host copied in (containers
# here cannot reach crates.io).
#
# Usage: scripts/deb.sh [SUITE...]
source "$(dirname "$0")/lib.sh"

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=("${DEB_SUITES[@]}")
need_docker "make deb"
vendor_crates
[ -f "$ROOT/docker/cargo-vendor/ngx-0.5.1/Cargo.toml" ] || {
    echo "make deb needs the crates vendored in docker/cargo-vendor (cargo vendor, run by this script when cargo is on PATH), and cargo is not" >&2
    exit 1
}

build_suite() {  # suite
    local suite=$1 version cid start rc=0 out="$ROOT/dist/$1"
    version=$(deb_version "$suite")
    start=$(date +%s)
    bash "$ROOT/docker/base-image.sh" "$suite"
    say "$suite: build environment (docker/deb/Dockerfile)"
    docker_build "deb-image-$suite" --build-arg SUITE="$suite" \
        --build-arg APT_CHECK_VALID_UNTIL="$(apt_check_valid_until "$suite")" \
        -t "ngx-upstream-cause/deb-build:$suite" -f "$ROOT/docker/deb/Dockerfile" "$ROOT/debian"
    say "$suite: dpkg-buildpackage ($version)"
    cid=$(docker create "ngx-upstream-cause/deb-build:$suite" \
        bash /build/ngx-upstream-cause/docker/deb/build.sh "$suite" "$version")
    # the source tree with the vendored crates as vendor/
    tar -C "$ROOT" -c --transform 's,^,build/ngx-upstream-cause/,' \
        --transform 's,^build/ngx-upstream-cause/docker/cargo-vendor,build/ngx-upstream-cause/vendor,' \
        --exclude='docker/cargo-vendor/README.md' \
        "${DEB_SOURCES[@]}" docker/cargo-vendor | docker cp - "$cid:/"
    docker start -a "$cid" >"$WORK/deb-$suite.log" 2>&1 || rc=$?
    if [ "$rc" = 0 ]; then
        rm -rf "$out" && mkdir -p "$out"
        docker cp "$cid:/build/out/." "$out/"
    fi
    docker rm -f "$cid" >/dev/null
    if [ "$rc" != 0 ]; then
        tail -40 "$WORK/deb-$suite.log" >&2
        echo "$suite: the package build failed (whole log: $WORK/deb-$suite.log)" >&2
        return 1
    fi
    local deb
    deb=$(ls "$out"/libnginx-mod-http-upstream-cause_*.deb)
    local depends=""
    command -v dpkg-deb >/dev/null && depends="; Depends: $(dpkg-deb -f "$deb" Depends)"
    say "$suite: ${deb#"$ROOT"/} ($(($(stat -c %s "$deb") / 1024)) KiB) in $(($(date +%s) - start)) s$depends"
}

for suite in "${suites[@]}"; do
    build_suite "$suite"
done
