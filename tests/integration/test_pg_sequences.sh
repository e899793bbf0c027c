#!/usr/bin/env bash
# Sequence values carried PostgreSQL → PostgreSQL (sync_sequences, issue #17): applications insert
# with bigserial, identity and nextval() default keys; the values reach the sink's sequences at
# start, on SIGHUP and at shutdown (the interval is set too long to play a part), so that after a
# cut-over (writes stop, cdcsync stops) inserts on the sink draw keys past every source key.
# `cdcsync sync-sequences PIPELINE` does it on demand with the service stopped, never moves a
# sequence backwards, and says which sequence it cannot carry (exit 1). One cluster, two databases.
source "$(dirname "$0")/lib.sh"

pg_start p
MPORT=$(free_port)
db() {
  local d=$1
  shift
  psql -X -h "$PG_p_DIR" -p "$PG_p_PORT" -U postgres -d "$d" -qAt -v ON_ERROR_STOP=1 "$@"
}
dsn() { printf 'host=127.0.0.1 port=%s user=postgres dbname=%s' "$PG_p_PORT" "$1"; }
for d in src dst; do psql_on p -c "CREATE DATABASE $d"; done

# The schema on both sides, as pg_dump --schema-only carries it: items' key is GENERATED ALWAYS
# AS IDENTITY on the sink too, which only takes the source's keys with OVERRIDING SYSTEM VALUE
# (inserts) and never a SET of the key (updates).
schema() { # schema IDENTITY_KIND
  cat <<SQL
CREATE TABLE orders (id bigserial PRIMARY KEY, v text);
CREATE TABLE items (id int GENERATED $1 AS IDENTITY (CACHE 20) PRIMARY KEY, v text);
CREATE SEQUENCE note_ids START 1000 INCREMENT 5;
CREATE TABLE notes (id int PRIMARY KEY DEFAULT nextval('note_ids'), v text);
CREATE TABLE unsynced (id serial PRIMARY KEY, v text);
SQL
}
schema ALWAYS | db src
schema ALWAYS | db dst

write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" <<CONF
[connector.src]
type = postgres
dsn = $(dsn src)
[connector.dst]
type = postgres
dsn = $(dsn dst)
[pipeline.seq]
source = src
sink = dst
tables = public.orders, public.items, public.notes
sync_sequences = yes
sync_sequences_interval_s = 86400
CONF

cat >"$WORK/w.sql" <<'SQL'
INSERT INTO orders (v) VALUES (md5(random()::text));
INSERT INTO items (v) VALUES (md5(random()::text));
INSERT INTO notes (v) VALUES (md5(random()::text));
INSERT INTO unsynced (v) VALUES ('x');
UPDATE items SET v = md5(v) WHERE id = (SELECT max(id) - 1 FROM items);
SQL
write() { # write SECONDS: two clients insert with the sequences' keys
  pgbench -n -h "$PG_p_DIR" -p "$PG_p_PORT" -U postgres -c 2 -j 1 -T "$1" -R 200 -f "$WORK/w.sql" src \
    >>"$WORK/pgbench.log" 2>&1 || fail "pgbench failed: $(tail -5 "$WORK/pgbench.log")"
}
last() { db "$1" -c "SELECT coalesce(last_value, 0) FROM pg_sequences WHERE sequencename = '$2'"; }
in_log() { grep -c -- "$1" "$WORK/service.log" || true; }
synced() { # synced COUNT: that many "sequence values synced" lines so far
  [ "$(in_log "sequence values synced")" -ge "$1" ]
}
same() { tables_equal p/src p/dst orders && tables_equal p/src p/dst items && tables_equal p/src p/dst notes; }

service_start
wait_for "the sync at start" 30 synced 1
write 3
wait_for "the rows" 60 same
# the start's sync came before these writes, and the interval is a day: the sink is behind
for s in orders_id_seq items_id_seq note_ids; do
  [ "$(last dst $s)" -lt "$(last src $s)" ] || fail "$s: the sink ($(last dst $s)) is not behind the source ($(last src $s)) before SIGHUP"
done

# SIGHUP carries them (the pipeline is unchanged and keeps streaming)
n=$(in_log "sequence values synced")
kill -HUP "$SERVICE_PID"
wait_for "the sync on SIGHUP" 30 synced $((n + 1))
for s in orders_id_seq items_id_seq note_ids; do
  [ "$(last dst $s)" -ge "$(last src $s)" ] || fail "$s: the sink ($(last dst $s)) is behind the source ($(last src $s)) after SIGHUP"
done

# The cut-over: writes, then the writes stop, then cdcsync stops (its last sync)
write 3
wait_for "the rows before the cut-over" 60 same
service_stop
assert_grep "sequence values synced at stop: 3 set on the sink" "$WORK/service.log"
for s in orders_id_seq items_id_seq note_ids; do
  log "$s: source $(last src $s), sink $(last dst $s)"
  [ "$(last dst $s)" -ge "$(last src $s)" ] || fail "$s: the sink ($(last dst $s)) is behind the source ($(last src $s)) after the stop"
done
# inserts on the sink draw new keys: no collision with any row the source wrote
db dst -c "INSERT INTO orders (v) SELECT 'on the sink' FROM generate_series(1, 50); INSERT INTO items (v) SELECT 'on the sink' FROM generate_series(1, 50); INSERT INTO notes (v) SELECT 'on the sink' FROM generate_series(1, 50)" ||
  fail "inserts on the sink after the cut-over collided with a source key"
for t in orders items notes; do
  [ "$(db dst -c "SELECT min(id) FROM $t WHERE v = 'on the sink'")" -gt "$(db src -c "SELECT max(id) FROM $t")" ] ||
    fail "$t: a key drawn on the sink is not past the source's"
done

# On demand, with the service stopped: more source writes, then the verb
write 2
"$CDCSYNC" -c "$WORK/cdcsync.conf" sync-sequences seq >"$WORK/verb.out" 2>&1 || { cat "$WORK/verb.out" >&2; fail "sync-sequences failed"; }
cat "$WORK/verb.out" >&2
assert_grep "set     public.orders.id: public.orders_id_seq = $(last src orders_id_seq) -> public.orders_id_seq" "$WORK/verb.out"
assert_grep "pipeline seq: 3 sequences set on the sink, 0 already at or past the source, 0 unused, 0 not carried" "$WORK/verb.out"
grep -q unsynced "$WORK/verb.out" && fail "a table outside tables had its sequence carried"
[ "$(last dst unsynced_id_seq)" = 0 ] || fail "unsynced_id_seq moved on the sink"
# never backwards: a sink sequence ahead of the source stays where it is
db dst -c "SELECT setval('orders_id_seq', 1000000)" >/dev/null
"$CDCSYNC" -c "$WORK/cdcsync.conf" sync-sequences seq >"$WORK/verb2.out" 2>&1 || { cat "$WORK/verb2.out" >&2; fail "sync-sequences failed"; }
assert_grep "ahead   public.orders.id: public.orders_id_seq = $(last src orders_id_seq) -> public.orders_id_seq (was 1000000)" "$WORK/verb2.out"
[ "$(last dst orders_id_seq)" = 1000000 ] || fail "orders_id_seq moved backwards on the sink"
# a sink column without a sequence: said, exit 1
db dst -c "DROP SEQUENCE note_ids CASCADE"
"$CDCSYNC" -c "$WORK/cdcsync.conf" sync-sequences seq >"$WORK/verb3.out" 2>&1 && fail "sync-sequences succeeded without a sink sequence"
assert_grep "missing public.notes.id: public.note_ids" "$WORK/verb3.out"
assert_grep "sink table public.notes has no sequence for column id" "$WORK/verb3.out"
# only PostgreSQL → PostgreSQL
"$CDCSYNC" -c "$WORK/cdcsync.conf" sync-sequences nosuch >"$WORK/verb4.out" 2>&1 && fail "sync-sequences of no pipeline succeeded"
assert_grep "has no [pipeline.nosuch]" "$WORK/verb4.out"
finish
