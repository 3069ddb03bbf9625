#!/usr/bin/env bash
# The packages under dist/ (scripts/deb.sh), installed as users install
# them: each into a clean container of its suite (debian:SUITE-slim, nothing
# else), with `apt-get install ./….deb`, which pulls the suite's own nginx.
# Then nginx -t, a 502 from a refused upstream with its cause header and
# enriched line; the stream module's package, with a TCP session to a
# refused upstream; the offline classifier's package (upstream-cause, which apt
# must install alone: no nginx) installed too and run on that error log:
# its summary must show connect_refused, and its `requests` output (copied
# out of the container) must parse as JSON, one request, cause
# connect_refused, from the module's line; then apt-get remove of the module
# leaving a working nginx and the classifier (docker/deb/test.sh).
# Last, bookworm's apt must refuse trixie's package because of the nginx
# ABI. The transcripts are printed; exits non-zero if any check fails.
#
# Usage: scripts/deb-test.sh [SUITE...]   (default: bookworm trixie sid)
source "$(dirname "$0")/lib.sh"

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=("${DEB_SUITES[@]}")
need_docker "the package tests"

package() {  # suite [package name]: the package's file
    local deb name=${2:-libnginx-mod-http-upstream-cause}
    deb=$(ls "$ROOT/dist/$1/${name}_"*.deb 2>/dev/null | head -1)
    [ -n "$deb" ] || { echo "no $name package in dist/$1: run make deb (scripts/deb.sh $1) first" >&2; return 1; }
    echo "$deb"
}

# The classifier's `requests` output, from the container: every line a JSON
# object, exactly one request, cause connect_refused, 502, from the module's
# line.
check_requests_json() {  # file
    /usr/bin/python3 - "$1" <<'PY'
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert len(reqs) == 1, f"{len(reqs)} requests, expected 1"
r = reqs[0]
got = (r["cause"], r["causes"], r["status"], r["source"], r["peer"])
assert got == ("connect_refused", "connect_refused", 502, "module", "127.0.0.1:9"), got
print(f"upstream-cause requests: 1 JSON object: cause={r['cause']} status={r['status']} "
      f"source={r['source']} peer={r['peer']} request={r['request']!r}")
PY
}

in_clean_container() {  # suite, package files (a space-separated list), test.sh arguments...
    local suite=$1 debs=$2 cid rc=0 d
    shift 2
    bash "$ROOT/docker/base-image.sh" "$suite"
    cid=$(docker create -e APT_CHECK_VALID_UNTIL="$(apt_check_valid_until "$suite")" \
        "debian:$suite-slim" bash /pkg/test.sh "$@")
    local files=()
    for d in $debs; do files+=(-C "$(dirname "$d")" "$(basename "$d")"); done
    tar -c --transform 's,^,pkg/,' "${files[@]}" -C "$ROOT/docker/deb" test.sh | docker cp - "$cid:/"
    docker start -a "$cid" || rc=$?
    # what the classifier answered, for the JSON check
    rm -f "$WORK/deb-test-$suite-requests.json"
    if [ "$rc" = 0 ] && [ "${1:-}" = install ] && [ -n "${3:-}" ]; then
        docker cp "$cid:/pkg/requests.json" "$WORK/deb-test-$suite-requests.json" || rc=1
    fi
    docker rm -f "$cid" >/dev/null
    return "$rc"
}

rc=0
for suite in "${suites[@]}"; do
    deb=$(package "$suite")
    cli=$(package "$suite" upstream-cause)
    stream=$(package "$suite" libnginx-mod-stream-upstream-cause)
    say "$suite: $(basename "$deb"), $(basename "$stream") and $(basename "$cli") in a clean debian:$suite-slim"
    start=$(date +%s)
    if in_clean_container "$suite" "$deb $cli $stream" install "$(basename "$deb")" "$(basename "$cli")" \
        "$(basename "$stream")" &&
        check_requests_json "$WORK/deb-test-$suite-requests.json"; then
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
