#!/bin/sh
# Runs the Go service with no supervisor. When the process exits, the host
# goes with it: a second later the container's network interface is taken
# down, so its address answers nothing any more (as for a removed container
# or a dead VM). The container itself stays, because `docker compose up
# --exit-code-from tests` stops the whole project when any container exits.
LOG=${LOG:-/var/log/go/go-service-gone.log}
mkdir -p "$(dirname "$LOG")"
trap 'exit 0' TERM INT
go-service >>"$LOG" 2>&1
rc=$?
echo "gone: go-service exited with status $rc; taking the network down" | tee -a "$LOG" >&2
sleep 1
for dev in $(ls /sys/class/net); do
    [ "$dev" = lo ] || ip link set "$dev" down
done
echo "gone: network down" | tee -a "$LOG" >&2
while :; do sleep 3600 & wait $!; done
