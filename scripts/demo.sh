#!/usr/bin/env bash
# The demo: builds the module and a matching nginx, starts the Go net/http
# service and nginx with nginx-conf/demo.conf on loopback, sends requests
# and shows, for each, the status, the X-Upstream-Cause header, the
# access-log variables and the enriched error-log line. Stops everything it
# started, also on failure or Ctrl-C.
source "$(dirname "$0")/lib.sh"

NGINX_PORT=8080
GO_ADDR=127.0.0.1:9001
DEMO="$WORK/demo"

need_packages "${BUILD_PACKAGES[@]}"
build_all

for addr in "127.0.0.1:$NGINX_PORT" "$GO_ADDR"; do
    if (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null; then
        echo "something already listens on $addr: stop it, the demo needs that port" >&2
        exit 1
    fi
done

rm -rf "$DEMO"
mkdir -p "$DEMO/conf" "$DEMO/logs"
ln -s "$WORK/modules" "$DEMO/modules"
cp "$ROOT/nginx-conf/demo.conf" "$DEMO/conf/nginx.conf"
NGINX=("$WORK/bin/nginx" -p "$DEMO/" -c conf/nginx.conf -e logs/error.log)

GO_PID=
cleanup() {
    local pid
    pid=$(cat "$DEMO/logs/nginx.pid" 2>/dev/null) || pid=
    [ -n "$pid" ] && "${NGINX[@]}" -s quit 2>/dev/null || true
    [ -n "$GO_PID" ] && kill "$GO_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    # nginx is a daemon here: wait (bounded) until its pid file is gone
    for _ in $(seq 100); do [ -f "$DEMO/logs/nginx.pid" ] || break; sleep 0.05; done
    [ -n "$pid" ] && [ -f "$DEMO/logs/nginx.pid" ] && kill -TERM "$pid" 2>/dev/null || true
}
trap cleanup EXIT

wait_listen() {  # addr: bounded wait until something accepts on it
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listens on $1" >&2
    return 1
}

start_go() {
    LISTEN=$GO_ADDR "$WORK/bin/go-service" >>"$DEMO/logs/go-service.log" 2>&1 &
    GO_PID=$!
    wait_listen "$GO_ADDR"
}

start_go
"${NGINX[@]}" -t -q
"${NGINX[@]}"
wait_listen "127.0.0.1:$NGINX_PORT"

count() { [ -f "$1" ] && wc -l <"$1" || echo 0; }

# Bold headings only on a terminal, and never with NO_COLOR set.
if [ -z "${NO_COLOR:-}" ] && [ -t 1 ]; then B=$'\033[1m' N=$'\033[0m'; else B='' N=''; fi

show() {  # path, what it demonstrates, [forged: also ask the service itself]
    local path=$1 about=$2 before_access before_error status header
    before_access=$(count "$DEMO/logs/access.json")
    before_error=$(count "$DEMO/logs/error.log")
    printf '\n%sGET %s%s  (%s)\n' "$B" "$path" "$N" "$about"
    read -r status header < <(curl -s -o /dev/null -m 15 \
        -w '%{http_code} %header{x-upstream-cause}\n' "http://127.0.0.1:$NGINX_PORT$path")
    printf '  status:            %s\n' "$status"
    if [ "${3:-}" = forged ]; then
        printf '  the service sent:  X-Upstream-Cause: %s  (asked directly, without nginx)\n' \
            "$(curl -s -o /dev/null -m 15 -w '%header{x-upstream-cause}' "http://$GO_ADDR$path")"
        printf '  the client got:    X-Upstream-Cause: %s  (through nginx: the forged value is gone)\n' "${header:-(none)}"
    else
        printf '  X-Upstream-Cause:  %s\n' "${header:-(none)}"
    fi
    for _ in $(seq 100); do
        [ "$(count "$DEMO/logs/access.json")" -gt "$before_access" ] && break
        sleep 0.02
    done
    printf '  access log:        %s\n' "$(tail -n +"$((before_access + 1))" "$DEMO/logs/access.json")"
    local line
    line=$(tail -n +"$((before_error + 1))" "$DEMO/logs/error.log" | grep 'upstream_cause=' || true)
    printf '  enriched line:     %s\n' "${line:-(none: not a gateway failure)}"
}

say "the demo: nginx on 127.0.0.1:$NGINX_PORT -> Go net/http service on $GO_ADDR"
show /ok "the service answers"
show /ping "request-level panic: net/http recovers and closes the connection"
show /crash "service-level panic: the Go process dies"
wait "$GO_PID" 2>/dev/null || true
GO_PID=
printf '  the Go service exited: %s\n' "$(grep -m1 '^panic:' "$DEMO/logs/go-service.log")"
show /ok "the process is gone: nothing listens"
start_go
show /ok "restarted: answers again"
show /bad-gateway "the service's own 502 with a forged X-Upstream-Cause header" forged
printf '\n%sGET /metrics%s  (the counters, Prometheus text format)\n' "$B" "$N"
curl -s -m 15 "http://127.0.0.1:$NGINX_PORT/metrics" | grep -v '^#' | sed 's/^/  /'
printf '\nlogs: %s\n' "$DEMO/logs"
