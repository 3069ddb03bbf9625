#!/bin/sh
# Runs the Go service the way production runs it: restarted whenever the
# process exits, after a pause (systemd's Restart=always, RestartSec=).
# Its output goes to the container's log and to $LOG for the tests.
RESTART_SEC=${RESTART_SEC:-2}
LOG=${LOG:-/var/log/go/go-service.log}
mkdir -p "$(dirname "$LOG")"
child=
trap '[ -n "$child" ] && kill "$child" 2>/dev/null; exit 0' TERM INT
while :; do
    go-service >>"$LOG" 2>&1 &
    child=$!
    wait "$child"
    rc=$?
    echo "supervise: go-service exited with status $rc; restarting in ${RESTART_SEC}s" | tee -a "$LOG" >&2
    sleep "$RESTART_SEC"
done
