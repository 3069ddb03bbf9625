#!/usr/bin/env bash
# `make deb`: the Debian packages libnginx-mod-http-upstream-cause (the
# module) and upstream-cause (the offline classifier, /usr/bin/upstream-cause),
# one of each per suite (default: bookworm trixie sid), both built from the
# one source package with its suite's dh-sequence-nginx (nginx-dev) and Rust
# in a clean container of that suite, left under dist/<suite>/.
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
# the vendored crates go in as the checkout's vendor/ (config then builds
# offline); without cargo on the host to vendor them, cargo in the container
# fetches them from crates.io
VENDOR=()
if compgen -G "$ROOT/docker/cargo-vendor/*/Cargo.toml" >/dev/null; then
    VENDOR=(docker/cargo-vendor)
else
    say "no cargo here to vendor the crates: the builds fetch them from crates.io"
fi

build_suite() {  # suite, the pid of its build_image
    local suite=$1 version cid start rc=0 out="$ROOT/dist/$1"
    version=$(deb_version "$suite")
    start=$(date +%s)
    wait "$2" || {
        tail -20 "$WORK/deb-base-$suite.log" >&2
        echo "$suite: no build environment (logs: $WORK/deb-base-$suite.log, $WORK/deb-image-$suite.log)" >&2
        return 1
    }
    say "$suite: dpkg-buildpackage ($version; its build environment was ready $(($(date +%s) - T0)) s after the start)"
    cid=$(docker create "ngx-upstream-cause/deb-build:$suite" \
        bash /build/ngx-upstream-cause/docker/deb/build.sh "$suite" "$version")
    # the source tree, with the vendored crates as vendor/
    tar -C "$ROOT" -c --transform 's,^,build/ngx-upstream-cause/,' \
        --transform 's,^build/ngx-upstream-cause/docker/cargo-vendor,build/ngx-upstream-cause/vendor,' \
        --exclude='docker/cargo-vendor/README.md' \
        "${DEB_SOURCES[@]}" "${VENDOR[@]}" | docker cp - "$cid:/"
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
    local deb pkg depends
    for pkg in "${DEB_PACKAGES[@]}"; do
        deb=$(ls "$out/${pkg}_"*.deb 2>/dev/null) || {
            echo "$suite: the build made no $pkg package (log: $WORK/deb-$suite.log)" >&2
            return 1
        }
        depends=""
        if command -v dpkg-deb >/dev/null; then
            depends=$(dpkg-deb -f "$deb" Depends)
            # the classifier reads logs: /usr/bin/upstream-cause, nothing of
            # nginx's, and it must not pull nginx in
            if [ "$pkg" = upstream-cause ]; then
                if grep -q nginx <<<"$depends"; then
                    echo "$suite: $pkg depends on nginx: $depends" >&2
                    return 1
                fi
                local files
                files=$(dpkg-deb -c "$deb")
                if ! grep -q ' \./usr/bin/upstream-cause$' <<<"$files" || grep -q nginx <<<"$files"; then
                    echo "$suite: $pkg has no /usr/bin/upstream-cause, or files of nginx's:" >&2
                    printf '%s\n' "$files" >&2
                    return 1
                fi
            fi
            # the HTTP module loads without Debian's stream module: it must
            # not pull it in (the stream module's package does)
            if [ "$pkg" = libnginx-mod-http-upstream-cause ] && grep -q libnginx-mod-stream <<<"$depends"; then
                echo "$suite: $pkg depends on Debian's stream module: $depends" >&2
                return 1
            fi
            depends="; Depends: $depends"
        fi
        say "$suite: ${deb#"$ROOT"/} ($(($(stat -c %s "$deb") / 1024)) KiB)$depends"
    done
    say "$suite: built in $(($(date +%s) - start)) s"
}

# The build environments are mostly downloads and unpacking: all of them are
# made at once, in the background, while the packages build one after the
# other (each is CPU-bound), each as soon as its environment is ready.
T0=$(date +%s)
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
declare -A image_pid
for suite in "${suites[@]}"; do
    say "$suite: build environment (docker/deb/Dockerfile), in the background"
    deb_build_image "$suite" >"$WORK/deb-base-$suite.log" 2>&1 &
    image_pid[$suite]=$!
done
for suite in "${suites[@]}"; do
    build_suite "$suite" "${image_pid[$suite]}"
done
say "packages: $(($(date +%s) - T0)) s"
