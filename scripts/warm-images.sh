#!/usr/bin/env bash
# CI's head start (.ci/run runs it in the background while the host builds
# and tests, which are CPU-bound): the Docker images of the later steps that
# are mostly downloads and unpacking: the Debian base images, the packages'
# build environments, the harness's Go service and fault upstream images,
# the apt stages of the harness's nginx and tests images and of the sid
# suite's image, and the official image's stand-in. Each later step finds them in Docker's cache and makes
# whatever is missing itself, so a failure here only costs time.
source "$(dirname "$0")/lib.sh"
need_docker "the image warm-up"
start=$(date +%s)
rc=0
pids=()
for suite in "${DEB_SUITES[@]}"; do
    bash "$ROOT/docker/base-image.sh" "$suite" >"$WORK/warm-base-$suite.log" 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
# One chain of builds per base image, the chains in parallel. Within a
# chain the builds go one after the other: two builds that start from the
# same image with the same first step, made at the same time, would each
# make that step, and a later build would find only one of them, and miss
# the cache below it.
sid_valid_until=$(apt_check_valid_until sid 2>/dev/null)
bookworm_chain() {
    deb_build_image bookworm
    # the stand-in for the official image (its nginx build is CPU-bound,
    # but short)
    bash "$ROOT/scripts/official-image-test.sh" --standin-only
}
trixie_chain() {
    deb_build_image trixie
    # the harness: nginx's stage before the module's package (with the
    # arguments docker/compose.yaml gives), the Go service, the fault
    # upstream, the tests' stage before the classifier's package
    docker_build warm-nginx-trixie --target nginx -f "$ROOT/docker/nginx/Dockerfile" "$ROOT"
    local image
    for image in go-service faults; do
        docker_build "warm-$image" -t "ngx-upstream-cause/$image" "$ROOT/docker/$image"
    done
    docker_build warm-tests --target python -f "$ROOT/docker/tests/Dockerfile" "$ROOT"
}
sid_chain() {
    deb_build_image sid
    docker_build warm-nginx-sid --target nginx --build-arg SUITE=sid \
        --build-arg APT_CHECK_VALID_UNTIL="$sid_valid_until" -f "$ROOT/docker/nginx/Dockerfile" "$ROOT"
    docker_build warm-sid-suite --target packages --build-arg APT_CHECK_VALID_UNTIL="$sid_valid_until" \
        -f "$ROOT/docker/sid-suite/Dockerfile" "$ROOT"
}
pids=()
for suite in "${DEB_SUITES[@]}"; do
    "${suite}_chain" >"$WORK/warm-$suite.log" 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
say "images warmed in $(($(date +%s) - start)) s (exit status $rc)"
exit "$rc"
