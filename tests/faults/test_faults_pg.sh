#!/usr/bin/env bash
# PostgreSQL -> PostgreSQL under network and server faults, with a write load on the source
# throughout: each fault is detected (/healthz 503, cdcsync_pipeline_up 0, the error names the
# side at fault, lag keeps growing) and recovered from by the service itself, and every
# scenario ends with the sink's contents equal to the source's (a keyless table shows any
# duplicate). Both sides are reached through TCP proxies that can freeze (no FIN, no RST) or cut.
# timeout_s is 3 here so that the suite stays short; the default (30) keeps detection within 60 s.
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/../integration/ops_lib.sh"
source "$(dirname "$0")/faults_lib.sh"

pg_start src
pg_start dst
proxy_start src "$PG_src_PORT"
proxy_start dst "$PG_dst_PORT"
pg_load_tables src t
MPORT=$(free_port)
# main_conf TABLES — the service's conf, pipeline main syncing TABLES.
main_conf() {
  write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" <<CONF
[connector.src]
type = postgres
dsn = $(pg_proxy_dsn src)
timeout_s = 3

[connector.dst]
type = postgres
dsn = $(pg_proxy_dsn dst)
create_tables = yes
timeout_s = 3

[pipeline.main]
source = src
sink = dst
tables = $1
CONF
}
main_conf "public.t, public.t_log"
service_start
wait_for "pipeline main streaming" 60 pipeline_streaming main
pg_load src t
wait_for "rows arriving on the sink" 30 sh -c "[ \"\$(psql -X -h $PG_dst_DIR -p $PG_dst_PORT -U postgres -d postgres -qAt -c 'SELECT count(*) FROM t' 2>/dev/null || echo 0)\" -gt 20 ]"

# synced FAULT — stops the load, waits until the sink equals the source, compares contents, and
# starts the load again.
synced() {
  stop_loads
  wait_synced src dst 120 t t_log
  assert_tables_equal src dst t t_log
  pg_load src t
}

# lag_bytes_growing — where cdcsync sees the source (its probe answers) and the sink takes
# nothing: lag_bytes counts the source's WAL the sink lacks, and grows with the load.
lag_bytes_growing() {
  wait_for "$fault: lag_bytes above 0" 30 lag_bytes_above main 0
  local b1
  b1=$(metric cdcsync_pipeline_lag_bytes main)
  wait_for "$fault: lag_bytes growing past $b1" 30 lag_bytes_above main "$b1"
}

# ---- the source behind a frozen path while a table added to `tables` is copied ----
# The copy reads on a connection of its own, holding the copy's snapshot: a FETCH behind the
# frozen path is bounded by timeout_s like every other wait, the attempt ends (connection error,
# /healthz 503), and once the path thaws the table is copied again from a new snapshot.
fault=pg_source_freeze_copy
psql_on src -c "CREATE TABLE big (id int PRIMARY KEY, v text);
  INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 1000000) g"
errs0=$(errors_of main connection)
n0=$(wc -l <"$WORK/service.log")
logged_since() { tail -n +"$((n0 + 1))" "$WORK/service.log" | grep -q -- "$1"; }
main_conf "public.t, public.t_log, public.big"
kill -HUP "$SERVICE_PID"
# 100000 of 1000000 rows read: the copy (bounded by the sink's pace, the queues between) goes on.
wait_for "$fault: the copy of big under way" 60 logged_since "snapshot of public.big: 100000 rows copied so far"
t0=$(now_s)
proxy_freeze src
detect main "$fault" "$t0"
msg=$(last_error main)
log "$fault: last error: $msg"
case "$msg" in *"connector src"*) ;; *) fail "$fault: the error does not blame the source: $msg" ;; esac
[ "$(errors_of main connection)" -gt "${errs0:-0}" ] || fail "$fault: errors_total{kind=connection} did not count it"
logged_since "copied public.big (" && fail "$fault: the copy ended although its source was frozen"
t1=$(now_s)
proxy_thaw src
recover main "$fault" "$t1"
wait_for "$fault: big copied after the thaw" 180 logged_since "copied public.big (1000000 rows)"
RECOVER_S=$(since "$t1")
synced
assert_tables_equal src dst big
result "$fault" "detect_s=$DETECT_S recover_s=$RECOVER_S (copy of 1000000 rows done)"

# ---- the sink behind a frozen path ----
fault=pg_sink_freeze
errs0=$(errors_of main connection)
t0=$(now_s)
proxy_freeze dst
detect main "$fault" "$t0"
msg=$(last_error main)
log "$fault: last error: $msg"
case "$msg" in *"sink dst"*) ;; *) fail "$fault: the error does not blame the sink: $msg" ;; esac
[ "$(errors_of main connection)" -gt "${errs0:-0}" ] || fail "$fault: errors_total{kind=connection} did not count it"
wait_for "$fault: lag above 2 s" 30 lag_above main 2
l1=$(metric cdcsync_pipeline_lag_seconds main)
wait_for "$fault: lag growing" 30 lag_above main "$l1"
lag_bytes_growing
t1=$(now_s)
proxy_thaw dst
recover main "$fault" "$t1"
synced
result "$fault" "detect_s=$DETECT_S recover_s=$RECOVER_S"

# ---- the source behind a frozen path (stream and side connections) ----
fault=pg_source_freeze
t0=$(now_s)
proxy_freeze src
# Lag tells the truth: the source goes on committing, the sink gets nothing, and lag grows
# although nothing read waits to be applied.
wait_for "$fault: lag above 2 s" 60 lag_above main 2
l1=$(metric cdcsync_pipeline_lag_seconds main)
wait_for "$fault: lag growing" 30 lag_above main "$l1"
detect main "$fault" "$t0"
msg=$(last_error main)
log "$fault: last error: $msg"
case "$msg" in *"connector src"*) ;; *) fail "$fault: the error does not blame the source: $msg" ;; esac
t1=$(now_s)
proxy_thaw src
recover main "$fault" "$t1"
synced
result "$fault" "detect_s=$DETECT_S recover_s=$RECOVER_S"

# ---- connections cut (RST) on both sides at once ----
fault=pg_cut
t0=$(now_s)
n0=$(grep -c 'retrying in' "$WORK/service.log" || true)
proxy_cut src
proxy_cut dst
wait_for "$fault: the cut noticed" 60 sh -c "[ \$(grep -c 'retrying in' '$WORK/service.log') -gt $n0 ]"
DETECT_S=$(since "$t0")
recover main "$fault" "$t0"
synced
result "$fault" "detect_s=$DETECT_S recover_s=$RECOVER_S"

# ---- immediate restarts of the source and of the sink, one incident after the other ----
# Each incident starts again from the shortest retry delay once the pipeline streamed a while
# (10 s) after the previous one: the first "retrying in" of every incident says 0.5 s.
first_retry_after() {
  tail -n +"$(($1 + 1))" "$WORK/service.log" | grep -o 'retrying in [0-9.]* s' | head -1
}
streamed_since=$(now_s)
for fault in pg_source_restart pg_sink_restart pg_source_restart_again; do
  case $fault in pg_source*) side=src ;; *) side=dst ;; esac
  # The previous incident ended 10 s of streaming ago.
  wait_for "11 s of streaming before $fault" 30 elapsed_at_least "$streamed_since" 11
  pipeline_streaming main || fail "$fault: not streaming before the incident"
  n0=$(wc -l <"$WORK/service.log")
  t0=$(now_s)
  pg_kill_server $side
  detect main "$fault" "$t0"
  # While the server is down, lag grows (the source goes on below, or the sink lacks it).
  if [ $side = src ]; then
    wait_for "$fault: lag above 1 s with the source down" 30 lag_above main 1
  else
    wait_for "$fault: lag above 1 s with the sink down" 30 lag_above main 1
  fi
  l1=$(metric cdcsync_pipeline_lag_seconds main)
  wait_for "$fault: lag growing" 30 lag_above main "$l1"
  # With the sink down the source still answers: lag_bytes grows too. With the source down its
  # WAL does not move, and cdcsync cannot see it: lag_bytes stays what was last observed.
  if [ $side = dst ]; then lag_bytes_growing; fi
  log "$fault: lag_seconds $(metric cdcsync_pipeline_lag_seconds main) lag_bytes $(metric cdcsync_pipeline_lag_bytes main)"
  t1=$(now_s)
  pg_start_again $side
  recover main "$fault" "$t1"
  streamed_since=$(now_s)
  retry=$(first_retry_after "$n0")
  log "$fault: first retry of the incident: $retry"
  [ "$retry" = "retrying in 0.5 s" ] || fail "$fault: the incident's first retry waited '$retry', not the shortest delay"
  synced
  result "$fault" "detect_s=$DETECT_S recover_s=$RECOVER_S first_retry=0.5s"
done

service_stop

# ---- the service itself paused (SIGSTOP) past the systemd watchdog ----
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
PROXIES+=("$!") # stopped with the proxies
wait_for "the notify listener" 10 grep -q listening "$NOTES"
start_notify_service() {
  NOTIFY_SOCKET=$SOCK WATCHDOG_USEC=2000000 sh -c 'export WATCHDOG_PID=$$; exec "$0" -c "$1" run' \
    "$CDCSYNC" "$WORK/cdcsync.conf" >>"$WORK/service.log" 2>&1 &
  SERVICE_PID=$!
}
pings_after() { awk -v t="$1" '$1 > t && /WATCHDOG=1/' "$NOTES" | wc -l; }
mono() { python3 -c 'import time; print(time.monotonic())'; }
start_notify_service
wait_for "READY=1" 60 grep -q 'READY=1' "$NOTES"
wait_for "pipeline main streaming" 60 pipeline_streaming main

fault=service_sigstop
kill -STOP "$SERVICE_PID"
m0=$(mono)
t0=$(now_s)
# 3 watchdog periods without a ping: systemd would act (below, as it would: SIGABRT/SIGKILL).
wait_for "$fault: 6 s stopped" 30 elapsed_at_least "$t0" 6
[ "$(pings_after "$m0")" = 0 ] || fail "$fault: watchdog pings while stopped"
kill -CONT "$SERVICE_PID"
t1=$(now_s)
m1=$(mono)
wait_for "$fault: watchdog pings again" 30 sh -c "[ \$(awk -v t=$m1 '\$1 > t && /WATCHDOG=1/' '$NOTES' | wc -l) -ge 2 ]"
wait_for "$fault: pipeline streaming after SIGCONT" 120 pipeline_streaming main
RECOVER_S=$(since "$t1")
synced
result "$fault" "stopped_s=6 recover_s=$RECOVER_S (resumed by SIGCONT)"

# As systemd's watchdog would: the stopped service killed, then started again.
kill -STOP "$SERVICE_PID"
t0=$(now_s)
wait_for "$fault: 6 s stopped" 30 elapsed_at_least "$t0" 6
service_kill9
t1=$(now_s)
start_notify_service
wait_for "$fault: pipeline streaming after the restart" 120 pipeline_streaming main
RECOVER_S=$(since "$t1")
synced
result "${fault}_killed" "recover_s=$RECOVER_S (killed while stopped, restarted)"

stop_loads
service_stop
finish
