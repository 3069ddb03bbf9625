#!/bin/bash
# Runs in a container of docker/deb/Dockerfile (scripts/deb.sh copies the
# source to /build/ngx-upstream-cause, with the vendored crates as vendor/):
# stamps the suite's version into debian/changelog and builds the binary
# packages with dpkg-buildpackage. The results go to /build/out.
set -euo pipefail
suite=$1 version=$2
cd /build/ngx-upstream-cause
dist=$suite
[ "$suite" = sid ] && dist=unstable
maintainer=$(sed -n 's/^ -- \(.*>\)  .*/\1/p' debian/changelog | head -1)
{
    printf 'ngx-upstream-cause (%s) %s; urgency=medium\n\n' "$version" "$dist"
    printf '  * Built for Debian %s, against its nginx-dev.\n\n' "$suite"
    printf ' -- %s  %s\n\n' "$maintainer" "$(date -R)"
    cat debian/changelog
} >debian/changelog.new
mv debian/changelog.new debian/changelog
dpkg-buildpackage -b -us -uc
mkdir -p /build/out
mv ../*.deb ../*.buildinfo ../*.changes /build/out/
