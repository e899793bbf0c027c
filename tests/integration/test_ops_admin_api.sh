#!/usr/bin/env bash
# The admin API (#15) against a running service: GET /api/pipelines and /api/conflicts, POST
# pause/resume/restart with and without credentials (admin_user, the metrics credentials as a
# fallback, none configured), the CLI verbs, and a pause that outlives a restart of the service.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ops_lib.sh"

ops_pair
printf 'adm-s3cret\n' >"$WORK/admin.pass"
chmod 600 "$WORK/admin.pass"
cp "$WORK/cdcsync.conf" "$WORK/plain.conf" # no credentials at all
sed -i "/^metrics_listen/a admin_user = ops\nadmin_password_file = $WORK/admin.pass" "$WORK/cdcsync.conf"
API="http://127.0.0.1:$MPORT/api"

# code METHOD PATH [CURL ARGS...] — the HTTP status; the body goes to $WORK/body.
code() {
  local method=$1 path=$2
  shift 2
  curl -sS -o "$WORK/body" -w '%{http_code}' --max-time 10 -X "$method" "$@" "$API$path"
}
# expect CODE METHOD PATH [CURL ARGS...]
expect() {
  local want=$1 got
  shift
  got=$(code "$@")
  [ "$got" = "$want" ] || fail "$1 $2 answered $got, not $want: $(head -c 300 "$WORK/body")"
}
state_is() { # PIPELINE STATE — per /api/pipelines
  curl -sS --max-time 5 "$API/pipelines" | python3 -c "import json,sys; p={p['name']: p for p in json.load(sys.stdin)['pipelines']}; sys.exit(p['$1']['state'] != '$2')"
}
slot_active() { # t / f
  [ "$(psql_on src -c "SELECT active FROM pg_replication_slots WHERE slot_name = 'cdcsync_main'")" = "$1" ]
}

service_start
wait_for "pipeline main streaming" 60 pipeline_streaming main
psql_on src -c "INSERT INTO t (id, v) SELECT g, 'a' FROM generate_series(1, 50) g"
wait_synced src dst 30 t

# GET /api/pipelines: what /status has per pipeline, plus the lag history of the console.
expect 200 GET /pipelines
python3 - "$WORK/body" <<'PY' || fail "/api/pipelines is not as expected: $(cat "$WORK/body")"
import json, sys
a = json.load(open(sys.argv[1]))
p = a["pipelines"][0]
assert p["name"] == "main" and p["state"] == "streaming", p
for k in ("source_position", "applied_position", "lag_seconds", "lag_bytes", "events_per_second", "transactions", "last_error"):
    assert k in p, k
h = p["lag_history"]
assert h["interval_s"] > 0 and isinstance(h["seconds"], list), h
PY
expect 405 GET /pipelines/main/pause
expect 404 POST /pipelines/nope/pause -u ops:adm-s3cret
expect 404 POST /pipelines/main/explode -u ops:adm-s3cret

# Mutations without credentials, or with wrong ones, are refused; nothing changes.
expect 401 POST /pipelines/main/pause
expect 401 POST /pipelines/main/pause -u ops:wrong
expect 401 POST /pipelines/main/pause -u someone:adm-s3cret
grep -q "authentication" "$WORK/body" || fail "a 401 does not say what it wants"
state_is main streaming || fail "a refused pause changed the pipeline"
# A body beyond the bound is refused before it is read whole.
head -c 100000 /dev/zero | tr '\0' 'x' >"$WORK/big"
expect 413 POST /pipelines/main/pause -u ops:adm-s3cret --data-binary @"$WORK/big"
state_is main streaming || fail "a refused pause changed the pipeline"

# Pause: accepted, the open batch committed, the slot released, every view says paused.
expect 202 POST /pipelines/main/pause -u ops:adm-s3cret
wait_for "main paused (/api/pipelines)" 30 state_is main paused
wait_for "the slot inactive" 30 slot_active f
scrape /status | grep -q '"state":"paused"' || fail "/status does not say paused"
"$CDCSYNC" -c "$WORK/cdcsync.conf" status >"$WORK/status.out" || fail "cdcsync status failed"
awk '$1 == "main" && $2 == "paused" { ok = 1 } END { exit !ok }' "$WORK/status.out" || fail "cdcsync status: $(cat "$WORK/status.out")"
[ "$(healthz_code)" = 503 ] || fail "/healthz is not 503 with a paused pipeline"
scrape /healthz | grep -q "pipeline main: paused" || fail "/healthz does not name the paused pipeline"
metric_is cdcsync_pipeline_up main 0 || fail "cdcsync_pipeline_up is not 0 while paused"
# Nothing reads the slot while paused: these rows wait in the source's WAL.
psql_on src -c "INSERT INTO t (id, v) SELECT g, 'p' FROM generate_series(51, 80) g"
slot_active f || fail "the slot became active while paused"

# The pause outlives a restart of the service (kept in the state store).
service_stop
service_start
wait_for "main paused after the restart" 60 state_is main paused
slot_active f || fail "the slot is active after a restart of a paused pipeline"
grep -q "pipeline=main .*paused: the source is not read" "$WORK/service.log" || fail "no log line saying paused"

# The CLI resumes it through the API, with the credentials from the conf.
"$CDCSYNC" -c "$WORK/cdcsync.conf" resume main >"$WORK/cli.out" 2>&1 || fail "cdcsync resume failed: $(cat "$WORK/cli.out")"
log "cdcsync resume main: $(cat "$WORK/cli.out")"
wait_for "main streaming after resume" 60 pipeline_streaming main
wait_synced src dst 30 t

# Restart: a new attempt at once, from the sink's checkpoint; the pipeline streams again.
n=$(grep -c "pipeline=main .*resuming from the sink's checkpoint" "$WORK/service.log" || true)
"$CDCSYNC" -c "$WORK/cdcsync.conf" restart main >"$WORK/cli.out" 2>&1 || fail "cdcsync restart failed: $(cat "$WORK/cli.out")"
restarted() { [ "$(grep -c "pipeline=main .*resuming from the sink's checkpoint" "$WORK/service.log")" -gt "$n" ]; }
wait_for "a new attempt after restart" 30 restarted
wait_for "main streaming after restart" 60 pipeline_streaming main
psql_on src -c "INSERT INTO t (id, v) VALUES (1000, 'after restart')"
wait_synced src dst 30 t
# The CLI's pause and its errors.
"$CDCSYNC" -c "$WORK/cdcsync.conf" pause main >"$WORK/cli.out" 2>&1 || fail "cdcsync pause failed: $(cat "$WORK/cli.out")"
wait_for "main paused by the CLI" 30 state_is main paused
rc=0
"$CDCSYNC" -c "$WORK/cdcsync.conf" pause nope >"$WORK/cli.out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "no pipeline nope" "$WORK/cli.out" || fail "cdcsync pause nope: rc=$rc $(cat "$WORK/cli.out")"
rc=0
"$CDCSYNC" -c "$WORK/cdcsync.conf" pause >"$WORK/cli.out" 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "cdcsync pause without a pipeline: rc=$rc"
expect 202 POST /pipelines/main/resume -u ops:adm-s3cret
wait_for "main streaming" 60 pipeline_streaming main

# GET /api/conflicts: newest first, filtered by pipeline, limited. The log is the service's
# state_dir/conflicts.jsonl (records as bidirectional pipelines append them).
for i in 1 2 3 4 5; do
  printf '{"ts_us":%d,"pipeline":"%s","source":"src","sink":"dst","table":"public.t","key":"{\\"id\\":%d}","winner":"incoming","resolution":"timestamp"}\n' \
    "$((1700000000000000 + i))" "$([ $((i % 2)) = 1 ] && echo main || echo other)" "$i" >>"$WORK/state/conflicts.jsonl"
done
expect 200 GET "/conflicts?pipeline=main&limit=2"
python3 - "$WORK/body" <<'PY' || fail "/api/conflicts: $(cat "$WORK/body")"
import json, sys
a = json.load(open(sys.argv[1]))
assert a["complete"] is True
assert [c["key"] for c in a["conflicts"]] == ['{"id":5}', '{"id":3}'], a
PY
expect 200 GET "/conflicts"
python3 -c "import json,sys; a=json.load(open('$WORK/body')); assert len(a['conflicts']) == 5 and a['conflicts'][0]['key'] == '{\"id\":5}', a" ||
  fail "/api/conflicts without a filter: $(cat "$WORK/body")"
expect 400 GET "/conflicts?limit=0"
expect 400 GET "/conflicts?limit=abc"
expect 400 GET "/conflicts?limit=1001"
expect 404 GET /nothing
service_stop

# The metrics credentials serve when no admin user is configured; reads need them too.
printf 'met-pw\n' >"$WORK/metrics.pass"
chmod 600 "$WORK/metrics.pass"
sed "/^metrics_listen/a metrics_user = mon\nmetrics_password_file = $WORK/metrics.pass" "$WORK/plain.conf" >"$WORK/metrics.conf"
chmod 600 "$WORK/metrics.conf"
service_start "$WORK/metrics.conf"
authed_streaming() { curl -sS --max-time 5 -u mon:met-pw "http://127.0.0.1:$MPORT/metrics" | grep -q '^cdcsync_pipeline_up{pipeline="main"} 1'; }
wait_for "main streaming (metrics auth)" 60 authed_streaming
expect 401 GET /pipelines
expect 200 GET /pipelines -u mon:met-pw
"$CDCSYNC" -c "$WORK/metrics.conf" status >"$WORK/status.out" 2>&1 || fail "cdcsync status with metrics auth: $(cat "$WORK/status.out")"
grep -q "^main  *streaming" "$WORK/status.out" || fail "cdcsync status with metrics auth: $(cat "$WORK/status.out")"
expect 401 POST /pipelines/main/restart
expect 202 POST /pipelines/main/restart -u mon:met-pw
wait_for "main streaming after a restart by the metrics user" 60 authed_streaming
service_stop

# No credentials configured at all: reads work, mutations are refused with how to configure them.
service_start "$WORK/plain.conf"
wait_for "main streaming (no credentials)" 60 pipeline_streaming main
expect 200 GET /pipelines
expect 403 POST /pipelines/main/pause -u ops:adm-s3cret
grep -q "admin_user" "$WORK/body" || fail "the refusal does not say how to configure credentials: $(cat "$WORK/body")"
rc=0
"$CDCSYNC" -c "$WORK/plain.conf" pause main >"$WORK/cli.out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "admin_user" "$WORK/cli.out" || fail "cdcsync pause without credentials: rc=$rc $(cat "$WORK/cli.out")"
state_is main streaming || fail "a refused pause changed the pipeline"
service_stop

# With the service stopped, the CLI says so.
rc=0
"$CDCSYNC" -c "$WORK/cdcsync.conf" pause main >"$WORK/cli.out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "cdcsync is not running" "$WORK/cli.out" || fail "cdcsync pause with the service stopped: rc=$rc $(cat "$WORK/cli.out")"
# No secret in the log.
! grep -q "adm-s3cret\|met-pw" "$WORK/service.log" || fail "a password reached the log"
finish
