#!/usr/bin/env bash
# Makes sure the base image the Dockerfiles start FROM exists locally.
#
# With a registry, `docker pull` gets it. Without one (offline machines, CI
# here), it is made from the Debian package registry: a minimal root by
# `debootstrap --variant=minbase`, imported under the same tag, so the same
# Dockerfiles work either way. Nothing is downloaded from anywhere but the
# Debian mirror. Needs root (debootstrap) for the offline path.
#
# Usage: docker/base-image.sh [SUITE]    (default: trixie -> debian:trixie-slim)
set -euo pipefail

SUITE=${1:-trixie}
TAG=debian:$SUITE-slim
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

if docker image inspect "$TAG" >/dev/null 2>&1; then
    exit 0
fi
if docker pull -q "$TAG" >/dev/null 2>&1; then
    say "pulled $TAG"
    exit 0
fi

say "no registry: making $TAG with debootstrap from $MIRROR"
if ! command -v debootstrap >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "debootstrap is missing: apt-get install debootstrap (as root)" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi
[ "$(id -u)" = 0 ] || { echo "making $TAG needs root (debootstrap)" >&2; exit 1; }

root=$(mktemp -d /tmp/base-image.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 || {
    tail -20 "$root.log" >&2
    exit 1
}
rm -f "$root.log"
# what the official slim images also leave out
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | docker import -c 'CMD ["bash"]' - "$TAG" >/dev/null
say "made $TAG ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%d MB", $1/1e6}'))"
