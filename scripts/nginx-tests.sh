#!/usr/bin/env bash
# nginx's own test suite (nginx-tests, Perl) against one nginx binary, twice:
# plain, then with both modules loaded and on (TEST_NGINX_GLOBALS loads
# them, TEST_NGINX_GLOBALS_HTTP turns classification, the header and the
# counter zone on in every test's http block, TEST_NGINX_GLOBALS_STREAM
# classification and a zone in every stream block). The suite is not part of this
# repository: give a checkout of it.
#
# Usage: scripts/nginx-tests.sh NGINX_TESTS_DIR [FILE.t...]
#        (or NGINX_TESTS_DIR=... scripts/nginx-tests.sh)
# The files default to the ones that exercise upstreams: proxy*.t
# upstream*.t grpc*.t fastcgi*.t uwsgi*.t scgi*.t ssi*.t auth_request*.t
# stream*.t.
#
#   NGINX_BIN              the nginx to test (default .work/bin/nginx)
#   UPSTREAM_CAUSE_MODULE  the module (default .work/modules/ngx_http_upstream_cause_module.so)
#   UPSTREAM_CAUSE_STREAM_MODULE  the stream module (default: beside it)
#   NGINX_STREAM_MODULE    nginx's own stream module, loaded first, where
#                          stream is dynamic (Debian's)
#   NGINX_TESTS_JOBS       files run at once (default 2)
#   NGINX_TESTS_TIMEOUT    seconds one file may take (default 600)
#   NGINX_TESTS_RERUN      1 (default): rerun each file whose outcome differs,
#                          one at a time, in both modes, to tell a real
#                          difference from a timing flake; 0: do not
#
# Each file runs on its own (`prove -v --merge --timer FILE`, NGINX_TESTS_JOBS
# of them at once) and its outcome is: passed, skipped (the whole file:
# "1..0 # SKIP ...", e.g. a module this nginx lacks) or failed (a failing
# subtest, a bad exit, a timeout). Results go to .work/nginx-tests/:
# plain/ and module/ hold each file's prove -v log (NAME.log), its
# error-log alerts (NAME.alerts) and, for a failure or an alert, the test's
# nginx.conf and error.log (NAME.dirs/); summary.txt is what is printed
# last. The binary and the module are copied there first, so that a build
# running meanwhile cannot swap them between the two runs.
#
# Exits 1 if a file's outcome differs between the runs (and, with reruns,
# the difference shows again when rerun alone), if the module run has a
# failing subtest that the plain run does not, or if the module run's error
# logs have an [alert] (a worker that "exited on signal" among them) that
# the plain run's do not; 2 on a usage error.
source "$(dirname "$0")/lib.sh"

# Perl modules and daemons the selected files use, or skip without:
# IO::Socket::SSL/Net::SSLeay (ssl and upstream ssl tests), FCGI, SCGI,
# Cache::Memcached(::Fast) with memcached (upstream_hash_memcached.t),
# Protocol::WebSocket (proxy_websocket.t), uwsgi with its python3 plugin
# (uwsgi*.t), and the openssl binary that makes the tests' certificates.
NGINX_TESTS_PACKAGES=(perl openssl libio-socket-ssl-perl libnet-ssleay-perl libfcgi-perl libscgi-perl
    libcache-memcached-perl libcache-memcached-fast-perl libprotocol-websocket-perl memcached
    uwsgi-core uwsgi-plugin-python3)
DEFAULT_FILES=(proxy*.t upstream*.t grpc*.t fastcgi*.t uwsgi*.t scgi*.t ssi*.t auth_request*.t stream*.t)
# What the module run adds to every test's http and stream block
# (docs/reference.md).
MODULE_HTTP_GLOBALS='upstream_cause on; upstream_cause_header X-Upstream-Cause; upstream_cause_zone nginx_tests 1m;'
MODULE_STREAM_GLOBALS='upstream_cause on; upstream_cause_zone nginx_tests_stream 1m;'

TESTS=${1:-${NGINX_TESTS_DIR:-}}
[ $# -eq 0 ] || shift
if [ -z "$TESTS" ]; then
    cat >&2 <<'EOF'
nginx's own test suite (nginx-tests, the nginx/nginx-tests repository on
GitHub) is not part of this repository: get a checkout of it and give its
path:

    bash scripts/nginx-tests.sh /tmp/nginx-tests      (or NGINX_TESTS_DIR=/tmp/nginx-tests)
EOF
    exit 2
fi
if [ ! -f "$TESTS/lib/Test/Nginx.pm" ]; then
    echo "$TESTS is not a checkout of nginx-tests (no lib/Test/Nginx.pm there): get one of the nginx/nginx-tests repository" >&2
    exit 2
fi
TESTS=$(cd "$TESTS" && pwd)
NGINX_BIN=${NGINX_BIN:-$WORK/bin/nginx}
MODULE=${UPSTREAM_CAUSE_MODULE:-$WORK/modules/ngx_http_upstream_cause_module.so}
STREAM_MODULE=${UPSTREAM_CAUSE_STREAM_MODULE:-$(dirname "$MODULE")/ngx_stream_upstream_cause_module.so}
JOBS=${NGINX_TESTS_JOBS:-2}
TIMEOUT=${NGINX_TESTS_TIMEOUT:-600}
RERUN=${NGINX_TESTS_RERUN:-1}
[ -x "$NGINX_BIN" ] || { echo "no nginx binary at $NGINX_BIN (build it: scripts/test.sh, or set NGINX_BIN)" >&2; exit 2; }
[ -f "$MODULE" ] || { echo "no module at $MODULE (build it: scripts/test.sh, or set UPSTREAM_CAUSE_MODULE)" >&2; exit 2; }
[ -f "$STREAM_MODULE" ] || { echo "no stream module at $STREAM_MODULE (build it: scripts/test.sh, or set UPSTREAM_CAUSE_STREAM_MODULE)" >&2; exit 2; }

cd "$TESTS"
if [ $# -gt 0 ]; then
    files=("$@")
else
    shopt -s nullglob
    # shellcheck disable=SC2206 # the patterns are meant to glob here
    files=(${DEFAULT_FILES[@]})
    shopt -u nullglob
fi
[ ${#files[@]} -gt 0 ] || { echo "no test files matched in $TESTS" >&2; exit 2; }
for f in "${files[@]}"; do
    [ -f "$f" ] || { echo "no $f in $TESTS" >&2; exit 2; }
done
mapfile -t files < <(printf '%s\n' "${files[@]}" | sort -u)

need_packages "${NGINX_TESTS_PACKAGES[@]}"

OUT=$WORK/nginx-tests
rm -rf "$OUT"
mkdir -p "$OUT/bin"
# A short scratch path: the tests put unix sockets in their temp directories.
SCRATCH=$(mktemp -d /tmp/nginx-tests-run.XXXXXX)
cp "$(readlink -f "$NGINX_BIN")" "$OUT/bin/nginx"
cp "$(readlink -f "$MODULE")" "$OUT/bin/ngx_http_upstream_cause_module.so"
cp "$(readlink -f "$STREAM_MODULE")" "$OUT/bin/ngx_stream_upstream_cause_module.so"
BIN=$OUT/bin/nginx
SO=$OUT/bin/ngx_http_upstream_cause_module.so
STREAM_SO=$OUT/bin/ngx_stream_upstream_cause_module.so

# Running as root, nginx's workers would be nobody, who cannot read the
# tests' temp directories (mode 0700). (proxy_bind_transparent.t has its own
# `user root wheel;` and fails on the duplicate; without this line it fails
# all the same where there is no group wheel, as on Debian.)
BASE_GLOBALS=
[ "$(id -u)" != 0 ] || BASE_GLOBALS='user root;'

# memcached refuses to run as root without -u: as root, the tests' memcached
# (upstream_hash_memcached.t) is this wrapper, which runs it as nobody.
mkdir -p "$SCRATCH/path"
if [ "$(id -u)" = 0 ] && command -v memcached >/dev/null; then
    printf '#!/bin/sh\nexec %s -u nobody "$@"\n' "$(command -v memcached)" >"$SCRATCH/path/memcached"
    chmod +x "$SCRATCH/path/memcached"
fi
export PATH="$SCRATCH/path:$PATH"

cleanup() {
    local p
    for p in "$SCRATCH"/pids/*; do
        [ -f "$p" ] || continue
        # timeout leads its own process group: the test, its nginx and its
        # backends are in it
        kill -TERM -- "-$(cat "$p")" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
mkdir -p "$SCRATCH/pids"

mode_env() {  # mode: the environment lines of that run
    local globals=$BASE_GLOBALS http= stream=
    if [ "$1" = module ] || [ "$1" = rerun-module ]; then
        globals="$globals load_module $SO;${NGINX_STREAM_MODULE:+ load_module $NGINX_STREAM_MODULE;} load_module $STREAM_SO;"
        http=$MODULE_HTTP_GLOBALS
        stream=$MODULE_STREAM_GLOBALS
    fi
    echo "TEST_NGINX_BINARY=$BIN"
    echo "TEST_NGINX_GLOBALS=$globals"
    echo "TEST_NGINX_GLOBALS_HTTP=$http"
    echo "TEST_NGINX_GLOBALS_STREAM=$stream"
    echo "TEST_NGINX_LEAVE=1"
}

# The failing subtests of a prove -v log, one a line (TODO ones are not
# failures), and what prove or the test said of a bad exit (nginx not
# starting, a timeout).
failures() {  # log
    grep -E '^not ok [0-9]+' "$1" | grep -v '# TODO' || true
    grep -E '^(Dubious|Bailout called|nginx: \[(emerg|alert)\]|Can.t start|.*timed out after)' "$1" || true
}

# One file in one mode: its outcome to MODE/results (file, outcome, seconds,
# detail, tab-separated), its log and alerts next to it.
run_one() {  # mode, file
    local mode=$1 f=$2 name=${2%.t}
    local dir=$OUT/$mode tmp=$SCRATCH/$mode/$name
    local log=$dir/$name.log rc=0 start outcome detail secs
    mkdir -p "$tmp"
    start=$(date +%s%N)
    local -a envs
    mapfile -t envs < <(mode_env "$mode")
    env TMPDIR="$tmp" "${envs[@]}" timeout -k 10 "$TIMEOUT" prove -v --merge --timer "$f" >"$log" 2>&1 &
    echo $! >"$SCRATCH/pids/$mode-$name"
    wait $! || rc=$?
    rm -f "$SCRATCH/pids/$mode-$name"
    secs=$(((($(date +%s%N) - start) / 1000000 + 500) / 1000))
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        echo "$f timed out after $TIMEOUT s" >>"$log"
        outcome=failed
    elif [ "$rc" != 0 ]; then
        outcome=failed
    elif grep -qE '^(\[[0-9:]+\] )?[^ ]+\.t \.+ skipped: ' "$log"; then
        # prove -v's line for a file that planned 1..0 # SKIP
        outcome=skipped
        detail=$(grep -E '^(\[[0-9:]+\] )?[^ ]+\.t \.+ skipped: ' "$log" | head -1 | sed -E 's/.* skipped: //')
    else
        outcome=passed
    fi
    if [ "$outcome" = failed ]; then
        detail=$(failures "$log" | sed -E 's#/[^ ]*/nginx-test-[^/ ]+#<testdir>#g' | sed -n 1,5p | paste -sd'|' -)
        [ -n "$detail" ] || detail="prove exited $rc"
    fi
    # [alert] lines, "worker process N exited on signal S" among them, and
    # sanitizer reports, from every nginx the test ran
    cat "$tmp"/*/error.log 2>/dev/null | grep -E '\[alert\]|exited on signal|Sanitizer' |
        sed -E 's/^[0-9\/]+ [0-9:]+ //; s/[0-9]+#[0-9]+: (\*[0-9]+ )?//; s/process [0-9]+/process N/' >"$dir/$name.alerts" || true
    # the module at work: its enriched lines, and its own internal errors
    printf '%s %s\n' "$(cat "$tmp"/*/error.log 2>/dev/null | grep -c ' upstream_cause=' || true)" \
        "$(cat "$tmp"/*/error.log 2>/dev/null | grep -c 'upstream_cause: internal error' || true)" >"$dir/$name.cause"
    if [ "$outcome" = failed ] || [ -s "$dir/$name.alerts" ]; then
        local t
        for t in "$tmp"/*/; do
            [ -d "$t" ] || continue
            mkdir -p "$dir/$name.dirs/$(basename "$t")"
            cp "$t"/*.conf "$t"/error.log "$dir/$name.dirs/$(basename "$t")/" 2>/dev/null || true
        done
    fi
    rm -rf "$tmp"
    printf '%s\t%s\t%s\t%s\n' "$f" "$outcome" "$secs" "${detail:-}" >>"$dir/results"
}

run_mode() {  # mode, files...
    local mode=$1 f n=0 start
    shift
    mkdir -p "$OUT/$mode"
    : >"$OUT/$mode/results"
    start=$(date +%s)
    for f in "$@"; do
        while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
        run_one "$mode" "$f" &
        n=$((n + 1))
        [ $((n % 20)) != 0 ] || say "$mode: $n/$# files started ($(($(date +%s) - start)) s)"
    done
    wait
    echo $(($(date +%s) - start)) >"$OUT/$mode/seconds"
    sort -o "$OUT/$mode/results" "$OUT/$mode/results"
}

outcome_of() { awk -F'\t' -v f="$2" '$1 == f { print $2 }' "$OUT/$1/results"; }
count() { awk -F'\t' -v o="$2" '$2 == o' "$OUT/$1/results" | wc -l; }
# A failing subtest's identity: its number and its name, without the
# diagnostics; and a bad exit.
failing_subtests() {  # mode, file
    failures "$OUT/$1/${2%.t}.log" | grep -E '^(not ok|Dubious)' |
        sed -E 's/^(not ok [0-9]+( - [^#]*)?).*/\1/' | sort -u
}

say "nginx-tests $(git -C "$TESTS" log -1 --format='%h %cs' 2>/dev/null || echo '(not a git checkout)'): ${#files[@]} files, $JOBS at a time"
say "nginx: $("$BIN" -v 2>&1 | sed 's/^nginx version: //') ($(readlink -f "$NGINX_BIN"), sha256 $(sha256sum "$BIN" | cut -c1-12))"
say "module: $(readlink -f "$MODULE") (sha256 $(sha256sum "$SO" | cut -c1-12))"
# The module run's additions must make a valid configuration, or every file
# would fail or skip (try_run skips a file whose nginx does not start).
mkdir -p "$SCRATCH/check"
cat >"$SCRATCH/check/nginx.conf" <<EOF
$BASE_GLOBALS
load_module $SO;
pid $SCRATCH/check/nginx.pid;
events {}
http {
    access_log off;
    $MODULE_HTTP_GLOBALS
    server { listen 127.0.0.1:8080; }
}
EOF
"$BIN" -t -q -p "$SCRATCH/check/" -e stderr -c "$SCRATCH/check/nginx.conf" || {
    echo "nginx rejects the module run's configuration:" >&2
    cat "$SCRATCH/check/nginx.conf" >&2
    exit 1
}

total_start=$(date +%s)
say "run 1: plain"
run_mode plain "${files[@]}"
say "run 2: with the module (TEST_NGINX_GLOBALS_HTTP: $MODULE_HTTP_GLOBALS)"
run_mode module "${files[@]}"

# Files whose outcome differs, or that fail in both runs but with failing
# subtests only the module run has.
differ=()
for f in "${files[@]}"; do
    p=$(outcome_of plain "$f") m=$(outcome_of module "$f")
    if [ "$p" != "$m" ]; then
        differ+=("$f")
    elif [ "$m" = failed ] && [ -n "$(comm -13 <(failing_subtests plain "$f") <(failing_subtests module "$f"))" ]; then
        differ+=("$f")
    fi
done

confirmed=()
flaky=()
if [ ${#differ[@]} -gt 0 ] && [ "$RERUN" = 1 ]; then
    say "rerunning the ${#differ[@]} differing files one at a time, in both modes"
    mkdir -p "$OUT/rerun-plain" "$OUT/rerun-module"
    : >"$OUT/rerun-plain/results"
    : >"$OUT/rerun-module/results"
    for f in "${differ[@]}"; do
        run_one rerun-plain "$f"
        run_one rerun-module "$f"
        p=$(outcome_of rerun-plain "$f") m=$(outcome_of rerun-module "$f")
        if [ "$p" != "$m" ] ||
            { [ "$m" = failed ] && [ -n "$(comm -13 <(failing_subtests rerun-plain "$f") <(failing_subtests rerun-module "$f"))" ]; }; then
            confirmed+=("$f")
        else
            flaky+=("$f")
        fi
    done
else
    confirmed=("${differ[@]}")
fi

# Alerts only the module run has, per file.
module_alerts=()
for f in "${files[@]}"; do
    a=$OUT/module/${f%.t}.alerts
    [ -s "$a" ] || continue
    if [ -n "$(comm -13 <(sort -u "$OUT/plain/${f%.t}.alerts") <(sort -u "$a"))" ]; then
        module_alerts+=("$f")
    fi
done

{
    echo "nginx-tests: $TESTS ($(git -C "$TESTS" log -1 --format='%h %cs' 2>/dev/null || echo 'not a git checkout')), ${#files[@]} files, $JOBS at a time"
    echo "nginx: $(readlink -f "$NGINX_BIN"); modules: $(readlink -f "$MODULE"), $(readlink -f "$STREAM_MODULE")"
    echo "module run: $(mode_env module | sed -n 's/^\(TEST_NGINX_GLOBALS[A-Z_]*\)=\(.*\)/\1='"'"'\2'"'"'/p' | paste -sd' ')"
    echo
    for mode in plain module; do
        printf '%-7s %3d passed, %3d skipped, %3d failed  (%s s)\n' "$mode:" "$(count "$mode" passed)" \
            "$(count "$mode" skipped)" "$(count "$mode" failed)" "$(cat "$OUT/$mode/seconds")"
    done
    echo "total time: $(($(date +%s) - total_start)) s"
    echo
    echo "outcome differs (${#differ[@]}):"
    for f in "${differ[@]}"; do
        tag=
        [ "$RERUN" != 1 ] || { [[ " ${flaky[*]} " == *" $f "* ]] && tag=" [did not show again when rerun alone: flaky]" || tag=" [shows again when rerun alone]"; }
        echo "  $f: plain $(outcome_of plain "$f"), module $(outcome_of module "$f")$tag"
        for mode in plain module; do
            awk -F'\t' -v f="$f" -v m="$mode" '$1 == f && $4 != "" { gsub(/\|/, "\n      ", $4); print "    " m ": " $4 }' "$OUT/$mode/results"
        done
    done
    echo
    echo "failed in both runs:"
    for f in "${files[@]}"; do
        [ "$(outcome_of plain "$f")" = failed ] && [ "$(outcome_of module "$f")" = failed ] || continue
        awk -F'\t' -v f="$f" '$1 == f { gsub(/\|/, "\n      ", $4); print "  " f ": " $4 }' "$OUT/plain/results"
    done
    echo
    echo "error-log alerts of the module run that the plain run does not have (${#module_alerts[@]} files):"
    for f in "${module_alerts[@]}"; do
        echo "  $f:"
        comm -13 <(sort -u "$OUT/plain/${f%.t}.alerts") <(sort -u "$OUT/module/${f%.t}.alerts") | sed -n 1,5p | sed 's/^/    /'
    done
    echo
    echo "the module at work (module run's error logs): $(cat "$OUT"/module/*.cause | awk '{ n += $1; f += ($1 > 0) } END { print n + 0 " enriched upstream_cause= lines in " f + 0 " files" }'); internal errors: $(cat "$OUT"/module/*.cause | awk '{ n += $2 } END { print n + 0 }')"
    for c in "$OUT"/module/*.cause; do
        [ "$(cut -d' ' -f2 "$c")" = 0 ] || echo "  internal errors in $(basename "${c%.cause}").t: $(cut -d' ' -f2 "$c")"
    done
    echo
    echo "skip reasons (module run):"
    awk -F'\t' '$2 == "skipped" { print $4 }' "$OUT/module/results" | sort | uniq -c | sort -rn | sed 's/^ */  /'
    echo
    echo "logs: $OUT/{plain,module}/NAME.log (prove -v), NAME.alerts, NAME.dirs/ (nginx.conf, error.log)"
} >"$OUT/summary.txt"
cat "$OUT/summary.txt"

rc=0
[ ${#confirmed[@]} -eq 0 ] || rc=1
[ ${#module_alerts[@]} -eq 0 ] || rc=1
exit "$rc"
