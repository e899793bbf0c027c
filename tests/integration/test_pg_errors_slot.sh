#!/usr/bin/env bash
# Bad input, part 3 (issue #2): a missing target table without create_tables (said, counted as a
# schema error, retried until the table exists, then nothing skipped), and a slot dropped while
# the sink holds a checkpoint (said, pipeline FAILED, the sink untouched).
source "$(dirname "$0")/lib.sh"

pg_start src
pg_start dst
MPORT=$(free_port)
psql_on src <<'SQL'
CREATE TABLE kept (id int PRIMARY KEY, v text);
CREATE TABLE missing (id int PRIMARY KEY, v text);
CREATE TABLE anchor (id int PRIMARY KEY);
INSERT INTO kept SELECT g, 'k' || g FROM generate_series(1, 50) g;
SQL
psql_on dst -c "CREATE TABLE kept (id int PRIMARY KEY, v text); CREATE TABLE anchor (id int PRIMARY KEY)"

write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" <<CONF
[connector.src]
type = postgres
dsn = $(pg_dsn src)

[connector.dst]
type = postgres
dsn = $(pg_dsn dst)

[pipeline.main]
source = src
sink = dst
tables = public.kept

; streams from now: the missing table fails a streamed transaction after a checkpoint exists,
; so the retry must resume from that checkpoint and skip nothing
[pipeline.miss]
source = src
sink = dst
tables = public.anchor, public.missing
snapshot = never
CONF
status_json() { curl -sf "http://127.0.0.1:$MPORT/status"; }
pipeline_state() { status_json | python3 -c "import json,sys; print(next(p['state'] for p in json.load(sys.stdin)['pipelines'] if p['name']=='$1'))"; }
state_is() { [ "$(pipeline_state "$1")" = "$2" ]; }
metric_at_least() { # NAME_AND_LABELS MIN
  local v
  v=$(curl -sf "http://127.0.0.1:$MPORT/metrics" | grep -F "$1 " | awk '{print $2}')
  [ -n "$v" ] && [ "${v%.*}" -ge "$2" ]
}

service_start

# ---- 7. missing target table ----
wait_for "pipeline miss streaming" 30 state_is miss streaming
psql_on src -c "INSERT INTO anchor VALUES (1)"
wait_synced src dst 30 anchor
has_checkpoint() { [ -n "$(psql_on dst -c "SELECT 1 FROM cdcsync.checkpoints WHERE pipeline = '$1'")" ]; }
wait_for "a checkpoint of pipeline miss" 10 has_checkpoint miss
psql_on src <<'SQL'
INSERT INTO missing SELECT g, 'm' || g FROM generate_series(1, 50) g;
BEGIN; INSERT INTO anchor VALUES (2); INSERT INTO missing VALUES (51, 'same txn as anchor 2'); COMMIT;
SQL
MSG_MISSING="table public.missing does not exist on sink dst — create it or set create_tables = yes in [connector.dst]"
wait_for "the missing-table message" 30 grep -qF "$MSG_MISSING — retrying in" "$WORK/service.log"
wait_for "a retry of pipeline miss" 30 metric_at_least 'cdcsync_errors_total{pipeline="miss",kind="schema"}' 2
wait_for "pipeline miss retrying" 10 state_is miss retrying
status_json >"$WORK/status.json"
assert_grep "$MSG_MISSING" "$WORK/status.json"
# The other pipeline on the same sink streams meanwhile.
wait_synced src dst 30 kept
state_is main streaming || fail "pipeline main is $(pipeline_state main), not streaming, while miss retries"
# Whole transactions: anchor 2 waits with the missing table's row of its transaction.
[ "$(psql_on dst -c "SELECT count(*) FROM anchor")" = 1 ] || fail "part of a failed source transaction reached the sink"
# Changes keep coming while the table is missing; none may be skipped.
psql_on src -c "INSERT INTO missing SELECT g, 'late' || g FROM generate_series(52, 80) g; UPDATE missing SET v = 'upd' WHERE id <= 5; DELETE FROM missing WHERE id BETWEEN 6 AND 8"
psql_on dst -c "CREATE TABLE missing (id int PRIMARY KEY, v text)"
wait_synced src dst 60 missing
wait_for "pipeline miss streaming" 20 state_is miss streaming
psql_on src -c "INSERT INTO missing VALUES (1000, 'after')"
wait_synced src dst 30 missing
assert_tables_equal src dst kept anchor missing

# ---- 6. slot dropped while the sink holds a checkpoint ----
service_stop
ckpt_before=$(psql_on dst -c "SELECT pos_text || ' ' || updated_at FROM cdcsync.checkpoints WHERE pipeline = 'main'")
[ -n "$ckpt_before" ] || fail "no checkpoint for pipeline main on the sink"
kept_before=$(table_digest dst kept)
psql_on src -c "SELECT pg_drop_replication_slot('cdcsync_main')" >/dev/null
psql_on src -c "INSERT INTO kept VALUES (999, 'written while the slot was gone')"
service_start
MSG_SLOT="connector src: replication slot \"cdcsync_main\" does not exist, but the sink holds a checkpoint at ${ckpt_before%% *} — the slot was dropped and changes since then are lost; re-create the pipeline with a new snapshot (delete its row from cdcsync.checkpoints on the sink and restart with snapshot = replace, or merge for a bidirectional pair)"
wait_for "pipeline main failed" 30 state_is main failed
assert_grep "$MSG_SLOT — the pipeline is stopped until this is fixed" "$WORK/service.log"
code=$(curl -s -o "$WORK/healthz.out" -w '%{http_code}' "http://127.0.0.1:$MPORT/healthz")
[ "$code" = 503 ] || fail "/healthz answered $code with a failed pipeline"
assert_grep "pipeline main: failed (last error at " "$WORK/healthz.out"
assert_grep "$MSG_SLOT" "$WORK/healthz.out"
# The other pipeline resumes and keeps streaming.
wait_for "pipeline miss streaming again" 20 state_is miss streaming
psql_on src -c "INSERT INTO missing VALUES (1001, 'still flowing')"
wait_synced src dst 30 missing
# The sink is untouched: same rows, same checkpoint; no new slot was created behind its back.
[ "$(table_digest dst kept)" = "$kept_before" ] || fail "the sink's table changed after the slot was dropped"
[ "$(psql_on dst -c "SELECT pos_text || ' ' || updated_at FROM cdcsync.checkpoints WHERE pipeline = 'main'")" = "$ckpt_before" ] ||
  fail "the sink's checkpoint changed after the slot was dropped"
[ "$(psql_on src -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'cdcsync_main'")" = 0 ] ||
  fail "a new slot cdcsync_main was created: changes since the checkpoint would be silently skipped"
service_stop
assert_grep "stopped" "$WORK/service.log"
finish
