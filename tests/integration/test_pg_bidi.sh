#!/usr/bin/env bash
# Bidirectional sync without loops: pipelines a→b and b→a between two PostgreSQL clusters while
# applications write to both sides (different keys). Both sides must end equal, the reverse
# pipeline's writes must be recognised as echoes (by their replication origin) and dropped, and
# once the applications stop, the event counters of both pipelines must stop moving.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/bidi_lib.sh"

pg_start a
pg_start b
for n in a b; do
  psql_on $n <<'SQL'
CREATE TABLE acc (id int PRIMARY KEY, v text, n int NOT NULL);
CREATE TABLE note (id bigint PRIMARY KEY, body text);
SQL
done
MPORT=$(free_port)

cat >"$WORK/cdcsync.conf" <<CONF
[service]
state_dir = $WORK/state
metrics_listen = 127.0.0.1:$MPORT
log_level = debug

[connector.a]
type = postgres
dsn = $(pg_dsn a)

[connector.b]
type = postgres
dsn = $(pg_dsn b)

[pipeline.ab]
source = a
sink = b
tables = public.acc, public.note

[pipeline.ba]
source = b
sink = a
tables = public.acc, public.note
CONF

# Side a owns ids 1..2000 (and odd notes), side b 100001..102000 (and even notes).
cat >"$WORK/work_a.sql" <<'SQL'
\set id random(1, 2000)
BEGIN;
INSERT INTO acc VALUES (:id, md5(random()::text), 1) ON CONFLICT (id) DO UPDATE SET v = excluded.v, n = acc.n + 1;
DELETE FROM acc WHERE id = :id + 3 AND n % 4 = 0;
INSERT INTO note VALUES (2 * (:id::bigint * 100000 + (random() * 99999)::int) + 1, 'a') ON CONFLICT DO NOTHING;
COMMIT;
SQL
sed -e 's/random(1, 2000)/random(100001, 102000)/' -e 's/+ 1, '"'"'a'"'"'/, '"'"'b'"'"'/' "$WORK/work_a.sql" >"$WORK/work_b.sql"
grep -q "'b'" "$WORK/work_b.sql" || fail "workload b not derived"


service_start
wait_for "both pipelines streaming" 60 streaming
pids=()
for n in a b; do
  dir=PG_${n}_DIR port=PG_${n}_PORT
  pgbench -n -h "${!dir}" -p "${!port}" -U postgres -c 2 -j 1 -T 10 -f "$WORK/work_$n.sql" postgres \
    >"$WORK/pgbench_$n.log" 2>&1 &
  pids+=($!)
done
for n in a b; do wait "${pids[0]}" || fail "pgbench on $n failed: $(tail -3 "$WORK/pgbench_$n.log")"; pids=("${pids[@]:1}"); done

wait_synced a b 120 acc note
sleep 2
e1=$(metric_sum cdcsync_events_total ab)/$(metric_sum cdcsync_events_total ba)
t1=$(metric_sum cdcsync_transactions_total ab)/$(metric_sum cdcsync_transactions_total ba)
sleep 5
e2=$(metric_sum cdcsync_events_total ab)/$(metric_sum cdcsync_events_total ba)
t2=$(metric_sum cdcsync_transactions_total ab)/$(metric_sum cdcsync_transactions_total ba)
log "events ab/ba: $e1 then $e2; transactions: $t1 then $t2"
[ "$e1" = "$e2" ] && [ "$t1" = "$t2" ] || fail "counters still move after the writes stopped: a loop"
[ "${e1%/*}" -gt 1000 ] && [ "${e1#*/}" -gt 1000 ] || fail "too few events applied: $e1"
assert_tables_equal a b acc note
# Each side writes its own keys: no two versions of a row are concurrent, so nothing is a conflict.
c=$(metric_sum cdcsync_conflicts_total ab)/$(metric_sum cdcsync_conflicts_total ba)
if [ "$c" != "0/0" ]; then
  # a rare failure (seen about once in ten CI runs; its cause is not known yet): show which rows
  # and versions were taken as concurrent
  head -c 6000 "$WORK/state/conflicts.jsonl" >&2 || true
  grep -v "dropped echo" "$WORK/service.log" | grep -Ei "conflict|retr|error|warn" | head -40 >&2 || true
  fail "conflicts counted where each side wrote its own keys (ab/ba): $c"
fi
own_a=$(psql_on a -c "SELECT count(*) FROM acc WHERE id > 100000")
[ "$own_a" -gt 0 ] || fail "b's rows never reached a"
assert_grep "dropped echo transaction" "$WORK/service.log"
grep -q "pipeline=ab.*origin cdcsync_ba" "$WORK/service.log" || fail "ab dropped no echo of ba"
grep -q "pipeline=ba.*origin cdcsync_ab" "$WORK/service.log" || fail "ba dropped no echo of ab"
service_stop
finish
