#!/usr/bin/env bash
# The whole integration suite (tests/) against Debian sid's own nginx (1.30),
# in a sid container: sid's nginx package and the module's sid package, plus
# the tests' packages (docker/sid-suite/Dockerfile), then pytest inside the
# container with nginx, the Go service and the upstreams on its loopback.
# Exits non-zero if any test fails (or a build does).
#
# Like scripts/docker-test.sh it first makes what an offline machine needs:
# the base image debian:sid-slim (docker/base-image.sh sid) and the module's
# sid package (dist/sid, built by scripts/deb.sh when missing or stale).
#
# Arguments go to pytest (bash scripts/sid-suite.sh -k taxonomy -x).
# SID_SUITE_TIMEOUT bounds the run, in seconds (default 1800).
source "$(dirname "$0")/lib.sh"

IMAGE=ngx-upstream-cause/sid-suite
TIMEOUT=${SID_SUITE_TIMEOUT:-1800}
NAME=ngx-upstream-cause-sid-suite-$$

need_docker "the sid suite"

start=$(date +%s)
bash "$ROOT/docker/base-image.sh" sid
valid_until=$(apt_check_valid_until sid)
ensure_debs sid

say "building $IMAGE (docker/sid-suite/Dockerfile)"
built_start=$(date +%s)
docker_build sid-suite-build --build-arg APT_CHECK_VALID_UNTIL="$valid_until" \
    -f "$ROOT/docker/sid-suite/Dockerfile" -t "$IMAGE" "$ROOT"
say "image built in $(($(date +%s) - built_start)) s: $(docker run --rm "$IMAGE" /usr/sbin/nginx -v 2>&1 | sed 's/^nginx version: //')"

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
    -e STORM_ARGS="${STORM_ARGS:-}" "$IMAGE" python3 -m pytest -p no:cacheprovider -q tests "$@" || rc=$?
[ "$rc" = 124 ] && echo "the run took more than $TIMEOUT s" >&2
say "run: $(($(date +%s) - run_start)) s; total: $(($(date +%s) - start)) s; exit status $rc"
exit "$rc"
