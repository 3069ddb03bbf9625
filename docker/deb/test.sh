#!/bin/bash
# Runs in a clean debian:SUITE-slim container (scripts/deb-test.sh copies
# this script and the packages to /pkg): what a user does with the package,
# printed as a transcript, with a check after each step. Also run in the
# official image's recipe's result (scripts/official-image-test.sh).
#
#   test.sh install PACKAGE.deb [CLI.deb [STREAM.deb]]   install it with apt (which
#       pulls the suite's own nginx), nginx -t, a request to a refused
#       upstream gets its cause header and the enriched line; with CLI.deb
#       (the upstream-cause package), apt must want nothing else for it (no
#       nginx), then it is installed and run on that error log: its summary
#       must show connect_refused, its `requests` output goes to
#       /pkg/requests.json (scripts/deb-test.sh parses it as JSON); then
#       apt-get remove of the module leaves a working nginx (and the
#       classifier installed and working); with STREAM.deb (the stream
#       module's package), it is installed too (apt pulls Debian's stream
#       module, and the load files order the two), a TCP session to a
#       refused upstream gets its cause in stream's access log and its
#       enriched line, and it is removed with the HTTP one
#   test.sh refuse PACKAGE.deb ABI   apt must refuse it, naming the ABI
#   test.sh site   in an nginx that has the module loaded: the refused
#       upstream's check alone
set -uo pipefail
export DEBIAN_FRONTEND=noninteractive
mode=$1 deb=/pkg/${2:-}
cli=${3:+/pkg/$3}
stream=${4:+/pkg/$4}
fail() { echo "FAILED: $*"; exit 1; }
step() { printf '\n# %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

# GET on the container's loopback; prints the response head
get() {  # port, path
    local resp
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    shift
    printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$1" >&3
    resp=$(cat <&3)
    exec 3>&-
    printf '%s\n' "$resp" | tr -d '\r' | sed '/^$/q'
}

# A site whose upstream refuses connections: nginx -t, nginx started, the
# 502 with its cause header and the enriched line.
site_check() {
    step "a site whose upstream refuses connections (nothing listens on 127.0.0.1:9)"
    cat >/etc/nginx/conf.d/upstream-cause.conf <<'CONF'
upstream_cause_header X-Upstream-Cause;
server {
    listen 127.0.0.1:8080;
    location / {
        proxy_pass http://127.0.0.1:9;
    }
}
CONF
    run cat /etc/nginx/conf.d/upstream-cause.conf
    run nginx -t || fail "nginx -t with the module"
    run nginx || fail "nginx did not start"
    printf '$ GET /checkout\n'
    head=$(get 8080 /checkout) || fail "no answer from nginx"
    printf '%s\n' "$head"
    grep -q '^HTTP/1.1 502 ' <<<"$head" || fail "not a 502"
    grep -q '^X-Upstream-Cause: connect_refused$' <<<"$head" || fail "no cause header"
    sleep 0.2
    printf '$ grep upstream_cause= /var/log/nginx/error.log\n'
    grep 'upstream_cause=' /var/log/nginx/error.log || fail "no enriched line"
    grep -q 'upstream_cause=connect_refused status=502 attempts=1 peer=127.0.0.1:9 ' /var/log/nginx/error.log \
        || fail "the enriched line is not the expected one"
}

# A stream server whose upstream refuses connections: its own error log
# (the classifier's checks read the HTTP one), nginx restarted with the
# stream module, one TCP session, then stream's access log and the line.
stream_check() {
    step "a TCP server whose upstream refuses connections (nothing listens on 127.0.0.1:9)"
    cat >/etc/nginx/upstream-cause-stream.conf <<'CONF'
stream {
    error_log /var/log/nginx/stream-error.log;
    log_format s '$status $upstream_addr uc=$upstream_cause list="$upstream_cause_list"';
    access_log /var/log/nginx/stream.log s;
    server {
        listen 127.0.0.1:8081;
        proxy_pass 127.0.0.1:9;
    }
}
CONF
    run cat /etc/nginx/upstream-cause-stream.conf
    printf '$ echo "include /etc/nginx/upstream-cause-stream.conf;" >>/etc/nginx/nginx.conf\n'
    echo "include /etc/nginx/upstream-cause-stream.conf;" >>/etc/nginx/nginx.conf
    run nginx -t || fail "nginx -t with the stream module"
    run nginx -s quit
    for _ in $(seq 50); do [ -e /run/nginx.pid ] || break; sleep 0.1; done
    run nginx || fail "nginx did not start with the stream module"
    printf '$ a TCP session to 127.0.0.1:8081 (sends "hello", reads until nginx closes)\n'
    exec 3<>/dev/tcp/127.0.0.1/8081 || fail "no connection to nginx's stream server"
    printf 'hello' >&3
    timeout 10 cat <&3 >/dev/null 2>&1   # (nginx resets a client whose bytes it never read)
    exec 3>&-
    sleep 0.2
    run cat /var/log/nginx/stream.log
    grep -qx '502 127.0.0.1:9 uc=connect_refused list="connect_refused"' /var/log/nginx/stream.log \
        || fail "stream's access log has not the session's cause"
    printf '$ grep upstream_cause= /var/log/nginx/stream-error.log\n'
    grep 'upstream_cause=' /var/log/nginx/stream-error.log || fail "no enriched line for the session"
    grep -q 'upstream_cause=connect_refused status=502 attempts=1 peer=127.0.0.1:9 .*server: 127.0.0.1:8081, upstream: "127.0.0.1:9"' \
        /var/log/nginx/stream-error.log || fail "the session's enriched line is not the expected one"
}

if [ "$mode" = site ]; then
    site_check
    run nginx -s quit
    echo "OK"
    exit 0
fi

# Services do not start while packages install (no init here): the script
# starts nginx itself.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
# false when the mirror's Release is past its Valid-Until (sid's lasts a week)
printf 'Acquire::Check-Valid-Until "%s";\n' "${APT_CHECK_VALID_UNTIL:-true}" >/etc/apt/apt.conf.d/99valid-until
apt-get update -qq || fail "apt-get update"

if [ "$mode" = refuse ]; then
    abi=$3
    step "a package built for another nginx"
    out=$(apt-get install -y --no-install-recommends -o Dpkg::Use-Pty=0 "$deb" 2>&1)
    rc=$?
    printf '$ apt-get install -y %s\n%s\n' "$deb" "$out"
    [ "$rc" != 0 ] || fail "apt installed it"
    grep -q "Depends: $abi but it is not installable" <<<"$out" \
        || fail "apt's refusal does not name $abi"
    echo "OK: refused ($abi is not installable here)"
    exit 0
fi

# The classifier alone: apt must want nothing but it (above all no nginx)
# in this clean container.
if [ -n "$cli" ]; then
    step "the classifier's dependencies, in the clean container (apt-get install --simulate)"
    out=$(apt-get install -s --no-install-recommends "$cli" 2>&1) || { printf '%s\n' "$out"; fail "apt cannot install $cli"; }
    printf '$ apt-get install -s %s | grep ^Inst\n' "$cli"
    grep '^Inst ' <<<"$out"
    [ "$(grep -c '^Inst ' <<<"$out")" = 1 ] && grep -q '^Inst upstream-cause ' <<<"$out" \
        || fail "installing upstream-cause would install more than itself"
fi

step "install"
run apt-get install -y --no-install-recommends -o Dpkg::Use-Pty=0 "$deb" || fail "apt-get install"
run ls -l /etc/nginx/modules-enabled/
link=/etc/nginx/modules-enabled/50-mod-http-upstream-cause.conf
[ "$(readlink "$link")" = /usr/share/nginx/modules-available/mod-http-upstream-cause.conf ] \
    || fail "$link is not the modules-available link"
run cat "$link"
run ls /usr/lib/nginx/modules/ /usr/share/doc/libnginx-mod-http-upstream-cause/
[ -f /usr/share/doc/libnginx-mod-http-upstream-cause/reference.md.gz ] || fail "no reference in /usr/share/doc"
site_check

# The classifier, on the error log the refused upstream just wrote to.
# Its summary's row: the cause, 1 failed attempt (100%), 1 request.
summary_check() {
    local out
    printf '$ upstream-cause summary /var/log/nginx/error.log\n'
    out=$(upstream-cause summary /var/log/nginx/error.log) || fail "upstream-cause summary"
    printf '%s\n' "$out"
    grep -Eq '^connect_refused +1 +100\.0% +1 ' <<<"$out" \
        || fail "the summary has no row: connect_refused, 1 failure, 1 request"
}
cli_check() {
    summary_check
    printf '$ upstream-cause requests /var/log/nginx/error.log\n'
    upstream-cause requests /var/log/nginx/error.log >/pkg/requests.json || fail "upstream-cause requests"
    cat /pkg/requests.json
    grep -q '"cause":"connect_refused"' /pkg/requests.json || fail "no request with cause connect_refused"
}
if [ -n "$cli" ]; then
    step "the offline classifier (upstream-cause), on that error log"
    run apt-get install -y --no-install-recommends -o Dpkg::Use-Pty=0 "$cli" || fail "apt-get install $cli"
    run ls -l /usr/bin/upstream-cause /usr/share/doc/upstream-cause/
    [ -f /usr/share/doc/upstream-cause/cli.md.gz ] || fail "no manual (cli.md) in /usr/share/doc/upstream-cause"
    run upstream-cause --version || fail "upstream-cause --version"
    cli_check
fi

if [ -n "$stream" ]; then
    step "install the stream module (TCP and UDP)"
    run apt-get install -y --no-install-recommends -o Dpkg::Use-Pty=0 "$stream" || fail "apt-get install $stream"
    run ls -l /etc/nginx/modules-enabled/
    slink=/etc/nginx/modules-enabled/70-mod-stream-upstream-cause.conf
    [ "$(readlink "$slink")" = /usr/share/nginx/modules-available/mod-stream-upstream-cause.conf ] \
        || fail "$slink is not the modules-available link"
    # loaded after nginx's own stream module, which apt installed for it
    [ -e /etc/nginx/modules-enabled/50-mod-stream.conf ] || fail "Debian's stream module is not enabled"
    run cat "$slink"
    stream_check
fi

step "remove (the module's directives go first, as for any module)"
run nginx -s quit
for _ in $(seq 50); do [ -e /run/nginx.pid ] || break; sleep 0.1; done
run rm /etc/nginx/conf.d/upstream-cause.conf
if [ -n "$stream" ]; then
    run sed -i '\,^include /etc/nginx/upstream-cause-stream.conf;$,d' /etc/nginx/nginx.conf
    run rm /etc/nginx/upstream-cause-stream.conf
    run apt-get remove -y -o Dpkg::Use-Pty=0 libnginx-mod-stream-upstream-cause || fail "apt-get remove of the stream module"
    [ -e "$slink" ] && fail "$slink is still there"
    [ -e /usr/lib/nginx/modules/ngx_stream_upstream_cause_module.so ] && fail "the stream .so is still there"
fi
run apt-get remove -y -o Dpkg::Use-Pty=0 libnginx-mod-http-upstream-cause || fail "apt-get remove"
run ls -l /etc/nginx/modules-enabled/
[ -e "$link" ] && fail "$link is still there"
[ -e /usr/lib/nginx/modules/ngx_http_upstream_cause_module.so ] && fail "the .so is still there"
run nginx -t || fail "nginx -t after the removal"
run nginx || fail "nginx did not start after the removal"
printf '$ GET / (the default site, port 80)\n'
head=$(get 80 /) || fail "no answer from nginx after the removal"
printf '%s\n' "$head"
grep -q '^HTTP/1.1 200 ' <<<"$head" || fail "the default site does not answer 200"
run nginx -s quit
if [ -n "$cli" ]; then
    step "the classifier after the module's removal: still installed, the same answer"
    run dpkg-query -W -f '${Package} ${Version} ${Status}\n' upstream-cause
    [ "$(dpkg-query -W -f '${Status}' upstream-cause)" = "install ok installed" ] \
        || fail "removing the module removed upstream-cause"
    summary_check
fi
echo "OK"
