#!/usr/bin/env bash
# The whole integration suite (tests/) against Debian sid's own nginx (1.30),
# in a sid container: the Docker harness's nginx-sid image (sid's nginx
# package, the module built against sid's nginx-dev with sid's rustc), plus
# the tests' packages (docker/sid-suite/Dockerfile), then pytest inside the
# container with nginx, the Go service and the upstreams on its loopback.
# Exits non-zero if any test fails (or a build does).
#
# Like scripts/docker-test.sh it first makes what an offline machine needs:
# the base image debian:sid-slim (docker/base-image.sh sid) and the crates
# vendored on the host (build containers here cannot reach crates.io). After
# scripts/docker-test.sh, the nginx-sid image comes from Docker's cache.
#
# Arguments go to pytest (bash scripts/sid-suite.sh -k taxonomy -x).
# SID_SUITE_TIMEOUT bounds the run, in seconds (default 1800).
source "$(dirname "$0")/lib.sh"

NGINX_IMAGE=ngx-upstream-cause/nginx-sid
IMAGE=ngx-upstream-cause/sid-suite
TIMEOUT=${SID_SUITE_TIMEOUT:-1800}
NAME=ngx-upstream-cause-sid-suite-$$

command -v docker >/dev/null || { echo "docker not found: install Docker Engine" >&2; exit 1; }

start=$(date +%s)
bash "$ROOT/docker/base-image.sh" sid
valid_until=$(apt_check_valid_until sid)
if command -v cargo >/dev/null; then
    say "vendoring crates for the image build (cargo vendor)"
    (cd "$ROOT" && cargo vendor --locked --versioned-dirs --no-delete docker/cargo-vendor >/dev/null)
fi

build() {  # log name, then docker build arguments
    local log="$WORK/$1.log"
    shift
    DOCKER_BUILDKIT=0 docker build "$@" >"$log" 2>&1 || {
        tail -40 "$log" >&2
        echo "image build failed (whole log: $log)" >&2
        return 1
    }
}
say "building $NGINX_IMAGE (docker/nginx/Dockerfile, SUITE=sid) and $IMAGE"
built_start=$(date +%s)
# the same arguments as docker/compose.yaml's nginx-sid, so either build
# reuses the other's layers
build sid-nginx-build --build-arg SUITE=sid --build-arg NGINX_CONF=nginx-conf/docker-h2.conf \
    --build-arg APT_CHECK_VALID_UNTIL="$valid_until" \
    -f "$ROOT/docker/nginx/Dockerfile" -t "$NGINX_IMAGE" "$ROOT"
build sid-suite-build --build-arg NGINX_IMAGE="$NGINX_IMAGE" \
    -f "$ROOT/docker/sid-suite/Dockerfile" -t "$IMAGE" "$ROOT"
say "images built in $(($(date +%s) - built_start)) s: $(docker run --rm "$IMAGE" /usr/sbin/nginx -v 2>&1 | sed 's/^nginx version: //')"

# The run: only the container's loopback (--network none), as root in the
# container; NET_ADMIN for the veth pair and its addresses, SYS_ADMIN for
# `ip netns` (it mounts /run/netns and calls setns/unshare, which Docker's
# seccomp profile allows only with SYS_ADMIN). The container is removed
# whatever happens, also when the timeout ends the run.
cleanup() { docker rm -f "$NAME" >/dev/null 2>&1 || true; }
trap cleanup EXIT
say "integration tests against sid's nginx, in the container (timeout ${TIMEOUT} s)"
run_start=$(date +%s)
rc=0
timeout "$TIMEOUT" docker run --rm --name "$NAME" --network none --cap-add NET_ADMIN --cap-add SYS_ADMIN \
    "$IMAGE" python3 -m pytest -p no:cacheprovider -q tests "$@" || rc=$?
[ "$rc" = 124 ] && echo "the run took more than $TIMEOUT s" >&2
say "run: $(($(date +%s) - run_start)) s; total: $(($(date +%s) - start)) s; exit status $rc"
exit "$rc"
