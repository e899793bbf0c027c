#!/usr/bin/env bash
# The real binary speaks systemd's notify protocol: on its own NOTIFY_SOCKET (a python3 listener
# standing in for systemd) it sends READY=1 once the pipeline streams (exactly once, with a
# STATUS=), STATUS= lines while running, WATCHDOG=1 about every second with WATCHDOG_USEC=2 s,
# and STOPPING=1 on SIGTERM, then exits 0.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ops_lib.sh"

LISTENER_PID=""
stop_listener() {
  [ -n "$LISTENER_PID" ] || return 0
  kill "$LISTENER_PID" 2>/dev/null || true
  wait "$LISTENER_PID" 2>/dev/null || true
  LISTENER_PID=""
}
# errexit is off in the trap: (exit $rc) only hands the test's status on to cleanup.
trap 'rc=$?; set +e; stop_listener; (exit $rc); cleanup' EXIT

ops_pair
# A second pipeline that fails for good at once (a start position that is not a PostgreSQL
# one): READY=1 must still come (the failure is reported, not waited on), and the watchdog must
# keep pinging long after (a failed pipeline's supervisor is idle by design; it is not hung).
psql_on src -c "CREATE TABLE u (id int PRIMARY KEY)"
cat >>"$WORK/cdcsync.conf" <<CONF

[pipeline.broken]
source = src
sink = dst
tables = public.u
snapshot = never
start_position = not-a-position
CONF
# The pipeline cannot stream before the source table has rows copied: READY must wait for it.
psql_on src -c "INSERT INTO t (id, v) SELECT g, md5(g::text) FROM generate_series(1, 20000) g"

SOCK=$WORK/notify.sock
NOTES=$WORK/notify.log
python3 -u - "$SOCK" >"$NOTES" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("listening", flush=True)
while True:
    msg = s.recv(4096).decode("utf-8", "replace")
    print("%.3f\t%s" % (time.monotonic(), msg.replace("\n", "|")), flush=True)
PY
LISTENER_PID=$!
wait_for "the notify listener" 10 grep -q listening "$NOTES"

# WATCHDOG_PID must be the service's own pid: a shell that execs into cdcsync keeps its pid.
NOTIFY_SOCKET=$SOCK WATCHDOG_USEC=2000000 sh -c 'export WATCHDOG_PID=$$; exec "$0" -c "$1" run' \
  "$CDCSYNC" "$WORK/cdcsync.conf" >>"$WORK/service.log" 2>&1 &
SERVICE_PID=$!

wait_for "READY=1" 60 grep -q 'READY=1' "$NOTES"
ready_line=$(grep 'READY=1' "$NOTES")
log "ready: $ready_line"
# READY came once the pipeline streamed: its snapshot is on the sink, and the status says so.
[ "$(psql_on dst -c 'SELECT count(*) FROM t')" = 20000 ] || fail "READY=1 before the snapshot was applied"
printf '%s\n' "$ready_line" | grep -q 'STATUS=1 of 2 pipelines streaming, some failed' || fail "READY=1 without the streaming status"
pipeline_streaming main || fail "READY=1 but cdcsync_pipeline_up is not 1"

# Watchdog pings for a while: about every second (half of WATCHDOG_USEC).
t0=$(python3 -c 'import time; print(time.monotonic())')
wait_for "6 watchdog pings after READY" 20 sh -c "[ \$(awk -v t=$t0 '\$1 > t && /WATCHDOG=1/' '$NOTES' | wc -l) -ge 6 ]"
wait_for "a STATUS= line after READY" 20 sh -c "grep -v READY '$NOTES' | grep -q 'STATUS='"
awk '/WATCHDOG=1/ { if (prev) print $1 - prev; prev = $1 }' "$NOTES" >"$WORK/intervals"
log "watchdog intervals: $(tr '\n' ' ' <"$WORK/intervals")"
awk '{ if ($1 < 0.7 || $1 > 1.6) bad = 1 } END { exit bad }' "$WORK/intervals" || fail "watchdog pings not about every second"
[ "$(grep -c 'READY=1' "$NOTES")" = 1 ] || fail "READY=1 sent more than once"
[ "$(metric cdcsync_pipeline_up broken)" = 0 ] || fail "the broken pipeline is up"
scrape /status | grep -q '"name":"broken","state":"failed"' || fail "the broken pipeline is not reported failed"

# 25 s on (past the 20 s a silent pipeline is allowed), the pings still come every second.
t1=$(python3 -c 'import time; print(time.monotonic() + 25)')
wait_for "watchdog pings 25 s after READY with a failed pipeline" 40 sh -c "[ \$(awk -v t=$t1 '\$1 > t && /WATCHDOG=1/' '$NOTES' | wc -l) -ge 3 ]"

kill -TERM "$SERVICE_PID"
wait_for "STOPPING=1" 30 grep -q 'STOPPING=1' "$NOTES"
rc=0
wait "$SERVICE_PID" || rc=$?
SERVICE_PID=""
[ "$rc" = 0 ] || fail "the service exited $rc after SIGTERM"
# Nothing but STOPPING=1 after STOPPING=1 is fine; no READY after it.
awk '/STOPPING=1/ { s = 1; next } s && /READY=1/ { exit 1 }' "$NOTES" || fail "READY=1 after STOPPING=1"
log "notifications: $(cut -f2 "$NOTES" | sort | uniq -c | sort -rn | head -5 | tr '\n' ';')"
finish
