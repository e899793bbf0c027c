#!/usr/bin/env bash
# `cdcsync status` against the running service: one aligned line per pipeline with state,
# positions, lag and events/s; --json is valid JSON with the same pipelines; with the service
# stopped it says it is not running and exits non-zero.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ops_lib.sh"

ops_pair
psql_on src -c "CREATE TABLE u (id int PRIMARY KEY, v text)"
cat >>"$WORK/cdcsync.conf" <<CONF

[pipeline.second_pipeline]
source = src
sink = dst
tables = public.u
CONF
service_start
wait_for "pipeline main streaming" 60 pipeline_streaming main
wait_for "pipeline second_pipeline streaming" 60 pipeline_streaming second_pipeline
psql_on src -c "INSERT INTO t (id, v) SELECT g, 'x' FROM generate_series(1, 200) g; INSERT INTO u VALUES (1, 'u')"
wait_synced src dst 30 t u

# Caught up: the lag column is 0.0s with no pending bytes shown, once the source's WAL end (probed
# about once a second) is no longer past the sink's position (its last records may hold nothing
# for the pipeline: the walsender says so with its next keepalive).
caught_up() {
  "$CDCSYNC" -c "$WORK/cdcsync.conf" status >"$WORK/status.out" 2>"$WORK/status.err" || return 1
  awk 'NR > 1 && $5 != "0.0s" { exit 1 }' "$WORK/status.out"
}
wait_for "caught-up pipelines showing a lag of 0.0s" 20 caught_up
cat "$WORK/status.out" >&2
[ "$(wc -l <"$WORK/status.out")" -eq 3 ] || fail "expected a header and one line per pipeline"
head -1 "$WORK/status.out" | grep -q '^PIPELINE  *STATE  *SOURCE_POS  *APPLIED_POS  *LAG  *EVENTS/S' || fail "unexpected header"
# One line per pipeline, in conf order, with state, two LSN positions, a lag and a rate.
awk 'NR == 2 && !($1 == "main" && $2 == "streaming" && $3 ~ /^[0-9A-F]+\/[0-9A-F]+$/ && $4 ~ /^[0-9A-F]+\/[0-9A-F]+$/ && $5 ~ /^[0-9.]+s/ && $6 ~ /^[0-9]+\.[0-9]$/) { exit 1 }
     NR == 3 && !($1 == "second_pipeline" && $2 == "streaming") { exit 1 }' "$WORK/status.out" || fail "a pipeline line is not as expected"
# Aligned: every column starts at the same offset on every line.
python3 - "$WORK/status.out" <<'PY' || fail "columns are not aligned"
import re, sys
lines = open(sys.argv[1]).read().splitlines()
hdr = lines[0]
starts = [m.start() for m in re.finditer(r"\S+", hdr)][:6]
for l in lines[1:]:
    for s in starts:
        assert l[s] != " " and (s == 0 or l[s - 1] == " "), (l, s)
PY
# events/s counts the 201 events of the last 10 s: nonzero right after them.
awk 'NR == 2 { exit !($6 + 0 > 0) }' "$WORK/status.out" || fail "events/s is 0 right after 200 events"

"$CDCSYNC" -c "$WORK/cdcsync.conf" status --json >"$WORK/status.json" || fail "status --json failed"
python3 -m json.tool "$WORK/status.json" >/dev/null || fail "status --json is not JSON"
python3 - "$WORK/status.json" <<'PY' || fail "status --json lacks the pipelines"
import json, sys
ps = json.load(open(sys.argv[1]))["pipelines"]
assert [p["name"] for p in ps] == ["main", "second_pipeline"], ps
for p in ps:
    for k in ("state", "source_position", "applied_position", "lag_seconds", "lag_bytes", "events_per_second"):
        assert k in p, (k, p)
assert ps[0]["transactions"] >= 1
PY

service_stop
rc=0
"$CDCSYNC" -c "$WORK/cdcsync.conf" status >"$WORK/stopped.out" 2>"$WORK/stopped.err" || rc=$?
log "with the service stopped: rc=$rc: $(cat "$WORK/stopped.err")"
[ "$rc" -ne 0 ] || fail "status exits 0 with the service stopped"
grep -q "cdcsync is not running" "$WORK/stopped.err" || fail "status does not say the service is not running"
[ ! -s "$WORK/stopped.out" ] || fail "status printed a table with the service stopped"
rc=0
"$CDCSYNC" -c "$WORK/cdcsync.conf" status --json >/dev/null 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "status --json exits 0 with the service stopped"
finish
