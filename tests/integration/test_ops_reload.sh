#!/usr/bin/env bash
# SIGHUP reload with two pipelines under a steady insert load (tables without a primary key, so
# a change applied twice shows as a duplicate row):
#  (a) a broken conf: the errors are logged with file:line, both pipelines keep streaming and
#      changes still arrive;
#  (b) only pipeline beta's section changed: beta restarts from its checkpoint (the log says
#      so), alpha keeps streaming on the same replication connection with no restart line, and
#      neither table loses or duplicates a row.
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

pg_start src
pg_start dst
MPORT=$(free_port)
psql_on src -c "CREATE TABLE a (id int, v text); CREATE TABLE b (id int, v text)"

# write_reload_conf BETA_BATCH [EXTRA] — the conf, replaced atomically as an editor or a deploy would.
write_reload_conf() {
  cat >"$WORK/next.conf" <<CONF
[service]
state_dir = $WORK/state
metrics_listen = 127.0.0.1:$MPORT
log_level = info

[connector.src]
type = postgres
dsn = $(pg_dsn src)

[connector.dst]
type = postgres
dsn = $(pg_dsn dst)
create_tables = yes

[pipeline.alpha]
source = src
sink = dst
tables = public.a
batch_max_rows = 1000

[pipeline.beta]
source = src
sink = dst
tables = public.b
batch_max_rows = $1
${2:-}
CONF
  chmod 600 "$WORK/next.conf"
  mv "$WORK/next.conf" "$WORK/cdcsync.conf"
}
write_reload_conf 1000
service_start
wait_for "alpha streaming" 60 pipeline_streaming alpha
wait_for "beta streaming" 60 pipeline_streaming beta

(
  i=0
  while :; do
    i=$((i + 1))
    psql_on src -c "INSERT INTO a VALUES ($i, 'a$i'); INSERT INTO b VALUES ($i, 'b$i')" >/dev/null 2>&1 || true
    sleep 0.05
  done
) &
LOAD_PID=$!
wait_for "load arriving on the sink" 30 sh -c "[ \"\$(psql -X -h $PG_dst_DIR -p $PG_dst_PORT -U postgres -d postgres -qAt -c 'SELECT count(*) FROM b' 2>/dev/null || echo 0)\" -gt 10 ]"

slot_pid() {
  psql_on src -c "SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'cdcsync_$1'"
}
alpha_pid=$(slot_pid alpha)
beta_pid=$(slot_pid beta)
[ -n "$alpha_pid" ] && [ -n "$beta_pid" ] || fail "no active replication connection for the slots"
restarts() { grep -c "\[pipeline=$1 .*\(resuming from the sink's checkpoint\|new pipeline\)" "$WORK/service.log" || true; }
[ "$(restarts alpha)" = 1 ] && [ "$(restarts beta)" = 1 ] || fail "expected one start line per pipeline"

# (a) a broken conf: an unknown sink connector.
log "SIGHUP with a broken conf"
write_reload_conf 1000 $'\n[pipeline.gamma]\nsource = src\nsink = nowhere\ntables = public.a'
lines=$(wc -l <"$WORK/service.log")
kill -HUP "$SERVICE_PID"
wait_for "the reload rejected" 20 grep -q "reload: .* is not valid" "$WORK/service.log"
tail -n +"$((lines + 1))" "$WORK/service.log" >"$WORK/reload_a.log"
cat "$WORK/reload_a.log" >&2
# The conf's own error, with file:line, is a logged ERROR line (journald sees its priority).
grep -q "ERROR .*cdcsync.conf:[0-9]*: .*nowhere" "$WORK/reload_a.log" || fail "the conf error (file:line) is not logged as an error"
grep -q "pipeline=gamma\|starting pipeline" "$WORK/reload_a.log" && fail "a pipeline was started from the broken conf"
pipeline_streaming alpha && pipeline_streaming beta || fail "a pipeline stopped streaming after a broken reload"
psql_on src -c "INSERT INTO a VALUES (-1, 'after broken reload'); INSERT INTO b VALUES (-1, 'after broken reload')"
wait_for "a change arriving after the broken reload" 20 sh -c \
  "[ \"\$(psql -X -h $PG_dst_DIR -p $PG_dst_PORT -U postgres -d postgres -qAt -c \"SELECT count(*) FROM a WHERE id = -1\" 2>/dev/null)\" = 1 ] && [ \"\$(psql -X -h $PG_dst_DIR -p $PG_dst_PORT -U postgres -d postgres -qAt -c \"SELECT count(*) FROM b WHERE id = -1\" 2>/dev/null)\" = 1 ]"
[ "$(slot_pid alpha)" = "$alpha_pid" ] && [ "$(slot_pid beta)" = "$beta_pid" ] || fail "a replication connection was replaced by a broken reload"

# (b) only beta's section changes.
log "SIGHUP with beta's batch_max_rows changed"
write_reload_conf 77
lines=$(wc -l <"$WORK/service.log")
kill -HUP "$SERVICE_PID"
wait_for "beta restarted" 30 sh -c "[ \$(grep -c \"\\[pipeline=beta .*resuming from the sink's checkpoint\" '$WORK/service.log') -ge 1 ]"
wait_for "beta streaming after the reload" 30 pipeline_streaming beta
tail -n +"$((lines + 1))" "$WORK/service.log" >"$WORK/reload_b.log"
cat "$WORK/reload_b.log" >&2
grep -q "reload: pipeline beta changed" "$WORK/reload_b.log" || fail "the log does not say beta changed"
grep -q "alpha" "$WORK/reload_b.log" && fail "alpha was touched by a reload that changed only beta"
[ "$(restarts alpha)" = 1 ] || fail "alpha restarted"
[ "$(slot_pid alpha)" = "$alpha_pid" ] || fail "alpha's replication connection was replaced"
[ "$(slot_pid beta)" != "$beta_pid" ] || fail "beta kept its replication connection: it did not restart"
pipeline_streaming alpha || fail "alpha not streaming after the reload"
dst_count() { psql_on dst -c "SELECT count(*) FROM $1"; }
n_b=$(dst_count b)
n_a=$(dst_count a)
wait_for "beta's new rows arriving after its restart" 30 sh -c "[ \$(psql -X -h $PG_dst_DIR -p $PG_dst_PORT -U postgres -d postgres -qAt -c 'SELECT count(*) FROM b') -gt $n_b ]"
wait_for "alpha's new rows arriving" 30 sh -c "[ \$(psql -X -h $PG_dst_DIR -p $PG_dst_PORT -U postgres -d postgres -qAt -c 'SELECT count(*) FROM a') -gt $n_a ]"

stop_load
wait_synced src dst 60 a b
assert_tables_equal src dst a b
for t in a b; do
  d=$(psql_on dst -c "SELECT count(*) - count(DISTINCT id) FROM $t")
  [ "$d" = 0 ] || fail "$d duplicate rows in $t"
done
log "rows: a=$(psql_on dst -c 'SELECT count(*) FROM a') b=$(psql_on dst -c 'SELECT count(*) FROM b')"
service_stop
finish
