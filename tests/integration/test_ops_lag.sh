#!/usr/bin/env bash
# Sync lag as an operator sees it. Under a steady write load lag_seconds stays small; with the
# SINK cluster stopped, lag_seconds grows second by second, lag_bytes is > 0, /healthz answers
# 503 with the reason and /status shows the error; with the sink back, lag returns to 0 (and
# stays 0 on an idle source), lag_bytes to 0, and the tables end equal.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ops_lib.sh"

LOAD_PID=""
stop_load() {
  [ -n "$LOAD_PID" ] || return 0
  kill "$LOAD_PID" 2>/dev/null || true
  wait "$LOAD_PID" 2>/dev/null || true
  LOAD_PID=""
}
# errexit is off in the trap: (exit $rc) only hands the test's status on to cleanup.
trap 'rc=$?; set +e; stop_load; (exit $rc); cleanup' EXIT

ops_pair
service_start
wait_for "pipeline main streaming" 60 pipeline_streaming main

# Idle source, caught up: lag is 0, not the age of the last change.
wait_for "lag_seconds 0 on an idle source" 20 metric_is cdcsync_pipeline_lag_seconds main 0

# A steady load: one small transaction every 0.1 s, for as long as the test needs.
(
  i=0
  while :; do
    i=$((i + 1))
    psql_on src -c "INSERT INTO t (id, v) VALUES ($i, 'load $i')" >/dev/null 2>&1 || true
    sleep 0.1
  done
) &
LOAD_PID=$!
wait_for "rows arriving on the sink" 30 sh -c "[ \"\$(psql -X -h $PG_dst_DIR -p $PG_dst_PORT -U postgres -d postgres -qAt -c 'SELECT count(*) FROM t' 2>/dev/null || echo 0)\" -gt 5 ]"

for n in 1 2 3 4 5; do
  lag=$(metric cdcsync_pipeline_lag_seconds main)
  log "under load: lag_seconds=$lag lag_bytes=$(metric cdcsync_pipeline_lag_bytes main)"
  float_lt "$lag" 3 || fail "lag_seconds $lag under a light steady load (expected < 3 s)"
  sleep 0.5
done
[ "$(healthz_code)" = 200 ] || fail "/healthz is not 200 while streaming"

log "stopping the sink cluster"
bash "$SRCDIR/scripts/pg.sh" stop "$PG_dst_DIR"
wait_for "lag_seconds above 1 s with the sink down" 30 sh -c "awk -v a=\"\$(curl -s http://127.0.0.1:$MPORT/metrics | awk '\$1 == \"cdcsync_pipeline_lag_seconds{pipeline=\\\"main\\\"}\" {print \$2}')\" 'BEGIN{exit !(a > 1)}'"
prev=0
for n in 1 2 3 4; do
  lag=$(metric cdcsync_pipeline_lag_seconds main)
  bytes=$(metric cdcsync_pipeline_lag_bytes main)
  log "sink down: lag_seconds=$lag lag_bytes=$bytes"
  float_lt "$prev" "$lag" || fail "lag_seconds did not grow with the sink down ($prev then $lag)"
  [ "${bytes:-0}" -gt 0 ] || fail "lag_bytes is $bytes while behind"
  prev=$lag
  sleep 1.1
done
[ "$(metric cdcsync_pipeline_up main)" = 0 ] || fail "pipeline_up is not 0 with the sink down"
code=$(healthz_code)
[ "$code" = 503 ] || fail "/healthz answered $code with the sink down (expected 503)"
scrape /healthz >"$WORK/healthz.txt" || true
log "/healthz: $(cat "$WORK/healthz.txt")"
grep -q '^pipeline main: \(retrying\|starting\)' "$WORK/healthz.txt" || fail "/healthz does not say which pipeline and why"
grep -q 'last error at .*dst' "$WORK/healthz.txt" || fail "/healthz does not give the error"
[ "$(wc -l <"$WORK/healthz.txt")" = 1 ] || fail "/healthz is not one line per failing pipeline"
grep -q "$(printf '\t')" "$WORK/healthz.txt" && fail "/healthz carries a tab from a multi-line error"
scrape /status >"$WORK/status.json"
python3 - "$WORK/status.json" <<'PY' || fail "/status does not show the sink error"
import json, sys
p = json.load(open(sys.argv[1]))["pipelines"][0]
assert p["name"] == "main" and p["state"] in ("retrying", "starting"), p
assert p["last_error"] and p["last_error"]["message"], p
assert p["lag_seconds"] > 1, p
print("status error:", p["last_error"]["message"], file=sys.stderr)
PY
errs=$(scrape | awk '$1 == "cdcsync_errors_total{pipeline=\"main\",kind=\"connection\"}" {print $2}')
[ "${errs:-0}" -gt 0 ] || fail "errors_total{kind=connection} did not count the sink failure"

log "starting the sink cluster again"
bash "$SRCDIR/scripts/pg.sh" start "$PG_dst_DIR" "$PG_dst_PORT"
wait_for "pipeline main streaming again" 60 pipeline_streaming main
stop_load
wait_synced src dst 60 t
wait_for "lag_seconds back to 0" 30 metric_is cdcsync_pipeline_lag_seconds main 0
# Caught up means 0 bytes too, right away (not after the source's next keepalive, ~10 s later),
# and nothing waiting in the queues.
wait_for "lag_bytes back to 0" 3 metric_is cdcsync_pipeline_lag_bytes main 0
wait_for "queue_depth back to 0" 3 metric_is cdcsync_queue_depth main 0
[ "$(healthz_code)" = 200 ] || fail "/healthz is not 200 once streaming again"
# Still 0 a few seconds later on the idle source (0 must not mean "just after a batch").
sleep 3
metric_is cdcsync_pipeline_lag_seconds main 0 || fail "lag_seconds $(metric cdcsync_pipeline_lag_seconds main) on an idle, caught-up source"
assert_tables_equal src dst t
log "rows: $(psql_on dst -c 'SELECT count(*) FROM t')"
service_stop
finish
