#!/usr/bin/env bash
# What the zone costs, in instructions per request, counted by callgrind on
# the same nginx binary: a failed request (connect refused) without and with
# upstream_cause_zone, and a successful proxied request without and with it:
# with the zone once before any failure (ok-clean-zone) and once after one
# (ok-zone: the success path then does its whole work, the live view's
# check of the peer). nginx runs
# single-process under valgrind; two runs per variant with N1 and N2
# requests, and (I(N2) - I(N1)) / (N2 - N1) cancels start-up and shutdown.
# Instruction counts, not seconds: repeatable on a busy box.
#
# MODULE=path/to.so measures another build of the module in the same nginx
# (bench/live-view.sh: the build before the live view), its runs under
# .work/bench/callgrind/$LABEL; without it the module and nginx are built
# here.
source "$(dirname "$0")/../scripts/lib.sh"

N1=${N1:-50}
N2=${N2:-250}
need_packages "${BUILD_PACKAGES[@]}" valgrind curl
if [ -z "${MODULE:-}" ]; then
    build_all
    MODULE="$WORK/modules/ngx_http_upstream_cause_module.so"
fi

OUT="$WORK/bench/callgrind/${LABEL:-now}"
rm -rf "$OUT"
mkdir -p "$OUT"

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() {  # variant n -> prints total instructions
    local variant=$1 n=$2 dir="$OUT/$1-$2" port live dead zone="" uri=/x
    port=$(free_port)
    live=$(free_port)
    dead=$(free_port)
    case "$variant" in *-zone) zone="upstream_cause_zone uc 1m;" ;; esac
    local first=/x
    [ "$variant" = ok-clean-zone ] && first=/ok
    case "$variant" in ok-*) uri=/ok ;; esac
    mkdir -p "$dir/logs"
    cat >"$dir/nginx.conf" <<CONF
load_module $MODULE;
daemon off; master_process off; worker_processes 1;
$( [ "$(id -u)" = 0 ] && echo "user root;" )
pid $dir/logs/nginx.pid;
error_log $dir/logs/error.log error;
events { worker_connections 64; }
http {
  access_log off;
  $zone
  server { listen 127.0.0.1:$port;
    location / { proxy_pass http://127.0.0.1:$dead; }
    location /ok { proxy_pass http://127.0.0.1:$live; }
  }
  server { listen 127.0.0.1:$live; return 200 ok; }
}
CONF
    valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
        "$WORK/bin/nginx" -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" 2>"$dir/valgrind.log" &
    local pid=$!
    for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    # the success path after a failure: the zone has recorded one (but in
    # ok-clean-zone)
    curl -s -o /dev/null "http://127.0.0.1:$port$first"
    for _ in $(seq "$n"); do curl -s -o /dev/null "http://127.0.0.1:$port$uri"; done
    # Graceful stop (callgrind writes its file on exit); under valgrind a
    # signal right after traffic is sometimes not acted on: repeat it.
    for _ in $(seq 24); do
        kill -QUIT "$pid" 2>/dev/null || break
        for _ in $(seq 50); do
            case "$(ps -o stat= -p "$pid" 2>/dev/null)" in "" | Z*) break 2 ;; esac
            sleep 0.1
        done
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" || true
    awk '/^totals:/ {print $2}' "$dir/callgrind.out"
}

declare -A total
VARIANTS=(fail-nozone fail-zone ok-nozone ok-clean-zone ok-zone)
for variant in "${VARIANTS[@]}"; do
    for n in "$N1" "$N2"; do
        total[$variant-$n]=$(run "$variant" "$n")
        say "$variant, $n requests: ${total[$variant-$n]} instructions"
    done
done
for variant in "${VARIANTS[@]}"; do
    per=$(( (${total[$variant-$N2]} - ${total[$variant-$N1]}) / (N2 - N1) ))
    printf '%-12s %d instructions per request\n' "$variant" "$per"
done
