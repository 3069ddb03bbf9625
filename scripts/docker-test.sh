#!/usr/bin/env bash
# The dockerized integration tests (docker/compose.yaml), as a user runs them,
# plus what an offline machine needs first: the Debian base images (trixie,
# sid) made from the package registry (docker/base-image.sh), and the
# module's packages for trixie and sid (dist/, built by scripts/deb.sh when
# missing or older than the sources). Tears everything down whatever
# happens. Exits non-zero if any scenario fails.
source "$(dirname "$0")/lib.sh"

need_docker "the Docker harness"
if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null; then
    COMPOSE=(docker-compose)   # the standalone tool (Debian bookworm's docker-compose 1.29)
else
    need_packages docker-compose
    COMPOSE=(docker-compose)
fi
COMPOSE+=(-f "$ROOT/docker/compose.yaml")
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-ngx-upstream-cause}

down() { "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true; }
trap down EXIT

bash "$ROOT/docker/base-image.sh" trixie
bash "$ROOT/docker/base-image.sh" sid
APT_CHECK_VALID_UNTIL=$(apt_check_valid_until sid)
export APT_CHECK_VALID_UNTIL
# the module's packages for the two nginx images (dist/trixie, dist/sid)
ensure_debs trixie sid

down
say "building the images (${COMPOSE[*]} build)"
start=$(date +%s)
"${COMPOSE[@]}" build
built=$(date +%s)
say "images built in $((built - start)) s; running the scenarios"
rc=0
"${COMPOSE[@]}" up --build --exit-code-from tests || rc=$?
say "run: $(($(date +%s) - built)) s; build + run: $(($(date +%s) - start)) s; exit status $rc"
exit "$rc"
