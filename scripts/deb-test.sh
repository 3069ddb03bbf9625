#!/usr/bin/env bash
# The packages under dist/ (scripts/deb.sh), installed as users install
# them: each into a clean container of its suite (debian:SUITE-slim, nothing
# else), with `apt-get install ./….deb`, which pulls the suite's own nginx.
# Then nginx -t, a 502 from a refused upstream with its cause header and
# enriched line, apt-get remove leaving a working nginx (docker/deb/test.sh).
# Last, bookworm's apt must refuse trixie's package because of the nginx
# ABI. The transcripts are printed; exits non-zero if any check fails.
#
# Usage: scripts/deb-test.sh [SUITE...]   (default: bookworm trixie sid)
source "$(dirname "$0")/lib.sh"

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=("${DEB_SUITES[@]}")
need_docker "the package tests"

package() {  # suite: the package's file
    local deb
    deb=$(ls "$ROOT/dist/$1"/libnginx-mod-http-upstream-cause_*.deb 2>/dev/null | head -1)
    [ -n "$deb" ] || { echo "no package in dist/$1: run make deb (scripts/deb.sh $1) first" >&2; return 1; }
    echo "$deb"
}

in_clean_container() {  # suite, package file, test.sh arguments...
    local suite=$1 deb=$2 cid rc=0
    shift 2
    bash "$ROOT/docker/base-image.sh" "$suite"
    cid=$(docker create -e APT_CHECK_VALID_UNTIL="$(apt_check_valid_until "$suite")" \
        "debian:$suite-slim" bash /pkg/test.sh "$@")
    tar -c --transform 's,^,pkg/,' -C "$(dirname "$deb")" "$(basename "$deb")" \
        -C "$ROOT/docker/deb" test.sh | docker cp - "$cid:/"
    docker start -a "$cid" || rc=$?
    docker rm -f "$cid" >/dev/null
    return "$rc"
}

rc=0
for suite in "${suites[@]}"; do
    deb=$(package "$suite")
    say "$suite: $(basename "$deb") in a clean debian:$suite-slim"
    start=$(date +%s)
    if in_clean_container "$suite" "$deb" install "$(basename "$deb")"; then
        say "$suite: passed in $(($(date +%s) - start)) s"
    else
        say "$suite: FAILED"
        rc=1
    fi
done

# apt refuses a package built for another nginx: trixie's on bookworm
if [[ " ${suites[*]} " == *" bookworm "* && " ${suites[*]} " == *" trixie "* ]]; then
    deb=$(package trixie)
    abi=$(dpkg-deb -f "$deb" Depends | grep -o 'nginx-abi-[^ ,]*')
    say "bookworm: trixie's package (Depends: $abi) must be refused"
    if in_clean_container bookworm "$deb" refuse "$(basename "$deb")" "$abi"; then
        say "bookworm: refused trixie's package"
    else
        say "bookworm: FAILED"
        rc=1
    fi
fi
exit "$rc"
