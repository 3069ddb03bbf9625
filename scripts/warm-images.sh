#!/usr/bin/env bash
# CI's head start (.ci/run runs it in the background while the host builds
# and tests, which are CPU-bound): the Docker images of the later steps that
# are mostly downloads and unpacking: the Debian base images, the packages'
# build environments, the harness's Go service, fault upstream and tests
# images, and the apt stages of the harness's nginx images and of the sid
# suite's image. Each later step finds them in Docker's cache and makes
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
pids=()
for suite in "${DEB_SUITES[@]}"; do
    deb_build_image "$suite" >"$WORK/warm-$suite.log" 2>&1 &
    pids+=($!)
done
for image in go-service faults tests; do
    docker_build "warm-$image" -t "ngx-upstream-cause/$image" "$ROOT/docker/$image" &
    pids+=($!)
done
# the stages before the module's package: nginx for the harness's two nginx
# images (with the arguments docker/compose.yaml gives), the packages of
# the sid suite
sid_valid_until=$(apt_check_valid_until sid 2>/dev/null)
docker_build warm-nginx-trixie --target nginx -f "$ROOT/docker/nginx/Dockerfile" "$ROOT" &
pids+=($!)
docker_build warm-nginx-sid --target nginx --build-arg SUITE=sid \
    --build-arg APT_CHECK_VALID_UNTIL="$sid_valid_until" -f "$ROOT/docker/nginx/Dockerfile" "$ROOT" &
pids+=($!)
docker_build warm-sid-suite --target packages --build-arg APT_CHECK_VALID_UNTIL="$sid_valid_until" \
    -f "$ROOT/docker/sid-suite/Dockerfile" "$ROOT" &
pids+=($!)
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
say "images warmed in $(($(date +%s) - start)) s (exit status $rc)"
exit "$rc"
