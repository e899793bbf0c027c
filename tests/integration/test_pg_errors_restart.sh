#!/usr/bin/env bash
# Bad input, part 4 (issue #2): servers going away and the service being stopped mid-stream.
# The source restarts mid-stream (reconnect with backoff, later changes arrive); the sink is down
# for a few seconds while changes are written (all arrive); SIGTERM under a steady write load
# (exit 0 within seconds, "stopped", and a restart continues without loss or duplicate). The
# table without a primary key catches duplicates: its rows are synced exactly once.
source "$(dirname "$0")/lib.sh"

pg_start src
pg_start dst
MPORT=$(free_port)
psql_on src -c "CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE nopk (n int, v text)"
psql_on dst -c "CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE nopk (n int, v text)"

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
tables = public.t, public.nopk
CONF

# load FIRST COUNT — COUNT single-row transactions into both tables, ~200/s, from one session.
load() {
  psql_on src -c "DO \$\$ BEGIN FOR i IN $1..$(($1 + $2 - 1)) LOOP
      INSERT INTO t VALUES (i, 'v' || i); INSERT INTO nopk VALUES (i, 'n' || i); COMMIT;
      PERFORM pg_sleep(0.005); END LOOP; END \$\$"
}
# dst_has_more_than N — the sink's t holds more than N rows (evaluated at each poll).
dst_has_more_than() { [ "$(psql_on dst -c "SELECT count(*) > $1 FROM t")" = t ]; }
streaming() { curl -sf "http://127.0.0.1:$MPORT/healthz" >/dev/null; }

service_start
wait_for "streaming" 30 streaming

# ---- 8a. the source server restarts mid-stream ----
load 1 300 &
LOAD=$!
wait_for "rows flowing" 20 dst_has_more_than 20
wait "$LOAD" || fail "load 1 failed"
bash "$SRCDIR/scripts/pg.sh" restart "$PG_src_DIR"
wait_for "the lost source connection in the log" 20 grep -qE "\[pipeline=main source=src sink=dst\] .* — retrying in" "$WORK/service.log"
load 301 200
wait_synced src dst 60 t nopk
wait_for "streaming again" 20 streaming
log "source restart: caught up"

# ---- 8b. the sink server is down while changes are written ----
load 501 300 &
LOAD=$!
wait_for "rows flowing" 20 dst_has_more_than 520
bash "$SRCDIR/scripts/pg.sh" stop "$PG_dst_DIR"
wait_for "the lost sink connection in the log" 20 grep -qF "connector dst: cannot connect to postgresql" "$WORK/service.log"
code=$(curl -s -o "$WORK/healthz.out" -w '%{http_code}' "http://127.0.0.1:$MPORT/healthz")
[ "$code" = 503 ] || fail "/healthz answered $code while the sink is down"
assert_grep "pipeline main: retrying (last error at " "$WORK/healthz.out"
wait "$LOAD" || fail "load 501 failed"
bash "$SRCDIR/scripts/pg.sh" start "$PG_dst_DIR" "$PG_dst_PORT"
wait_synced src dst 90 t nopk
log "sink restart: caught up"

# ---- 9 + 10. SIGTERM during a steady write load, then a restart ----
load 801 600 &
LOAD=$!
wait_for "rows flowing" 20 dst_has_more_than 850
stops_before=$(grep -c "INFO  stopped" "$WORK/service.log" || true)
kill -TERM "$SERVICE_PID"
t0=$SECONDS
rc=0
wait "$SERVICE_PID" || rc=$?
SERVICE_PID=""
[ "$rc" = 0 ] || fail "the service exited $rc on SIGTERM, expected 0"
[ $((SECONDS - t0)) -le 5 ] || fail "the service took $((SECONDS - t0)) s to stop"
[ "$(grep -c "INFO  stopped" "$WORK/service.log")" -gt "$stops_before" ] || fail "no \"stopped\" in the log after SIGTERM"
mid=$(psql_on dst -c "SELECT count(*) FROM t")
log "stopped with $mid of up to 1400 rows applied"
service_start
wait "$LOAD" || fail "load 801 failed"
wait_synced src dst 90 t nopk
# nopk equal as ordered multisets means no row twice: every source row has a distinct n.
[ "$(psql_on dst -c "SELECT count(*) = count(DISTINCT n) AND count(*) = 1400 FROM nopk")" = t ] ||
  fail "nopk on the sink has duplicates or missing rows"
assert_tables_equal src dst t nopk
service_stop
assert_grep "stopped" "$WORK/service.log"
finish
