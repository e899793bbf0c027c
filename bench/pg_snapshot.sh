#!/usr/bin/env bash
# PostgreSQL → PostgreSQL initial load (#14): pgbench's schema at SCALE (SHAPE=uuid: one table of
# UUID_ROWS rows keyed by a random uuid, with two secondary indexes), copied in one run by
# cdcsync's initial snapshot (once per snapshot_workers value), by PostgreSQL's own subscription
# with copy_data = true (timed until every table is ready, pg_subscription_rel.srsubstate = 'r'),
# and by pg_dump -Fd -j2 then pg_restore -j2; every target is then checked equal to the source.
#
#   bench/pg_snapshot.sh   (env: SHAPE=pgbench | uuid, SCALE=30, UUID_ROWS=1000000, WORKERS="1 2 4",
#                           CHUNK_ROWS (snapshot_chunk_rows,
#                           default the conf's), APPLY_WORKERS (apply_workers, default the conf's),
#                           SNAPSHOT_INDEXES (snapshot_indexes: after | during, default the conf's),
#                           CDCSYNC=path/to/cdcsync, KEEP_WORK=1)
#
# Servers: two PostgreSQL clusters (scripts/pg.sh; synchronous_commit = off and fsync = off on
# both): the source, and one target cluster holding a database per run, each made from the
# source's schema (pg_dump --schema-only: primary keys in place while loading, for cdcsync and the
# subscription alike; pg_restore makes its own, after the data). cdcsync is timed from its start
# until the sink records every table as copied (cdcsync.tables), the subscription from CREATE
# SUBSCRIPTION, pg_dump + pg_restore from the dump's start to the restore's end.
#
# Output: key=value lines on stdout (with the machine's load), a summary on stderr.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SHAPE=${SHAPE:-pgbench}
SCALE=${SCALE:-30}
UUID_ROWS=${UUID_ROWS:-1000000}
WORKERS=${WORKERS:-"1 2 4"}
LIMIT=${LIMIT:-1800}
case "$SHAPE" in
pgbench) TABLES="pgbench_accounts pgbench_branches pgbench_tellers pgbench_history" ;;
uuid) TABLES="orders" ;;
*) fail "SHAPE must be pgbench or uuid" ;;
esac
# shellcheck disable=SC2086
NTABLES=$(echo $TABLES | wc -w)
# shellcheck disable=SC2086
PUBLIC_TABLES=$(printf 'public.%s, ' $TABLES)
PUBLIC_TABLES=${PUBLIC_TABLES%, }

# shellcheck disable=SC2086
digest() { pg_digest "$1" "$2" $TABLES; } # NAME DATABASE

log "starting 2 PostgreSQL clusters (synchronous_commit = off, fsync = off, identical settings)"
export PG_SYNC_COMMIT=off
pg_start src
pg_start dst
if [ "$SHAPE" = pgbench ]; then
  pgbench -q -i -s "$SCALE" -h 127.0.0.1 -p "$PG_src_PORT" -U postgres postgres >"$WORK/init.log" 2>&1 ||
    { cat "$WORK/init.log" >&2; fail "pgbench -i"; }
else
  psql_on src <<SQL
CREATE TABLE orders (id uuid PRIMARY KEY, customer int NOT NULL, created timestamptz NOT NULL, note text);
CREATE INDEX orders_customer ON orders (customer);
CREATE INDEX orders_created ON orders (created);
INSERT INTO orders SELECT gen_random_uuid(), (random() * 100000)::int,
  '2026-01-01'::timestamptz - random() * interval '1000 days', md5(g::text) FROM generate_series(1, $UUID_ROWS) g;
VACUUM ANALYZE orders;
SQL
fi
psql_on src -c "CREATE PUBLICATION bench_pub FOR TABLE $PUBLIC_TABLES"
pg_dump -h 127.0.0.1 -p "$PG_src_PORT" -U postgres --schema-only postgres >"$WORK/schema.sql"
SRC_DIGEST=$(digest src postgres)
ROWS=0
for t in $TABLES; do ROWS=$((ROWS + $(psql_on src -c "SELECT count(*) FROM $t"))); done
BYTES=$(psql_on src -c "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c WHERE relname = ANY (string_to_array('$TABLES', ' ')) AND relkind = 'r'")
SRC_PM=$(pg_postmaster_pid "$PG_src_DIR")
DST_PM=$(pg_postmaster_pid "$PG_dst_DIR")
log "source: $ROWS rows, $((BYTES / 1048576)) MB with indexes"

new_target() { # DATABASE — an empty database with the source's schema
  psql_on dst -c "CREATE DATABASE $1"
  psql_on "dst/$1" -f "$WORK/schema.sql" >/dev/null
}

OUT=""
out() { OUT+="$1"$'\n'; }

# ---- cdcsync, once per snapshot_workers value ----
for w in $WORKERS; do
  db=cdc_w$w
  new_target "$db"
  cat >"$WORK/cdcsync_$w.conf" <<CONF
[service]
state_dir = $WORK/state_$w
metrics_listen = off
log_level = ${LOG_LEVEL:-info}

[connector.src]
type = postgres
dsn = $(pg_dsn src)
publication = bench_pub

[connector.dst]
type = postgres
dsn = host=127.0.0.1 port=$PG_dst_PORT user=postgres dbname=$db

[pipeline.load_w$w]
source = src
sink = dst
tables = $PUBLIC_TABLES
snapshot_workers = $w
${CHUNK_ROWS:+snapshot_chunk_rows = $CHUNK_ROWS}
${APPLY_WORKERS:+apply_workers = $APPLY_WORKERS}
${SNAPSHOT_INDEXES:+snapshot_indexes = $SNAPSHOT_INDEXES}
CONF
  chmod 600 "$WORK/cdcsync_$w.conf"
  log "cdcsync, snapshot_workers = $w: initial load"
  s0=$(cpu_tree "$SRC_PM")
  d0=$(cpu_tree "$DST_PM")
  t0=$(now)
  service_start "$WORK/cdcsync_$w.conf"
  wait_query "cdcsync's copy into $db" "$LIMIT" "SELECT count(*) = $NTABLES FROM cdcsync.tables WHERE state = 'copied'" \
    psql_on "dst/$db" >/dev/null
  secs=$(calc "$(now) - $t0")
  cpu=$(cpu_tree "$SERVICE_PID")
  rss=$(peak_rss_kb "$SERVICE_PID")
  dcpu=$(calc "$(cpu_tree "$DST_PM") - $d0")
  scpu=$(calc "$(cpu_tree "$SRC_PM") - $s0")
  service_stop
  psql_on src -c "SELECT pg_drop_replication_slot('cdcsync_load_w$w')" >/dev/null
  [ "$(digest dst "$db")" = "$SRC_DIGEST" ] || fail "cdcsync's target $db differs from the source"
  eval "CDC_SECS_$w=$secs"
  out "cdcsync_w${w}_seconds=$(fmt2 "$secs")"
  out "cdcsync_w${w}_rows_per_s=$(fmt0 "$(calc "$ROWS / $secs")")"
  out "cdcsync_w${w}_cpu_seconds=$(fmt2 "$cpu")"
  out "cdcsync_w${w}_target_cpu_seconds=$(fmt2 "$dcpu")"
  out "cdcsync_w${w}_source_cpu_seconds=$(fmt2 "$scpu")"
  out "cdcsync_w${w}_peak_rss_kb=$rss"
  log "cdcsync, snapshot_workers = $w: $(fmt2 "$secs") s, peak RSS $((rss / 1024)) MiB; target equals the source"
done

# ---- PostgreSQL's subscription, copy_data = true ----
new_target nat
log "native subscription: copy_data = true"
s0=$(cpu_tree "$SRC_PM")
d0=$(cpu_tree "$DST_PM")
t0=$(now)
psql_on dst/nat -c "CREATE SUBSCRIPTION bench_sub CONNECTION '$(pg_dsn src)' PUBLICATION bench_pub WITH (copy_data = true)"
wait_query "every table of the subscription ready" "$LIMIT" \
  "SELECT count(*) = $NTABLES AND bool_and(srsubstate = 'r') FROM pg_subscription_rel" psql_on dst/nat >/dev/null
NAT_SECS=$(calc "$(now) - $t0")
NAT_DST_CPU=$(calc "$(cpu_tree "$DST_PM") - $d0")
NAT_SRC_CPU=$(calc "$(cpu_tree "$SRC_PM") - $s0")
psql_on dst/nat -c "DROP SUBSCRIPTION bench_sub"
[ "$(digest dst nat)" = "$SRC_DIGEST" ] || fail "the subscription's target differs from the source"
log "native subscription: $(fmt2 "$NAT_SECS") s; target equals the source"

# ---- pg_dump -Fd -j2, pg_restore -j2 ----
psql_on dst -c "CREATE DATABASE dump"
log "pg_dump -Fd -j2 | pg_restore -j2"
t0=$(now)
pg_dump -h 127.0.0.1 -p "$PG_src_PORT" -U postgres -Fd -j2 -f "$WORK/dump" $(printf -- "-t %s " $TABLES) postgres
pg_restore -h 127.0.0.1 -p "$PG_dst_PORT" -U postgres -j2 -d dump "$WORK/dump"
DUMP_SECS=$(calc "$(now) - $t0")
[ "$(digest dst dump)" = "$SRC_DIGEST" ] || fail "pg_restore's target differs from the source"
log "pg_dump + pg_restore: $(fmt2 "$DUMP_SECS") s; target equals the source"

best=""
for w in $WORKERS; do
  v="CDC_SECS_$w"
  if [ -z "$best" ] || [ "$(calc "${!v} < $best")" = 1 ]; then best=${!v}; fi
done
cat <<EOF
bench=pg_initial_load
shape=$SHAPE
scale=$([ "$SHAPE" = pgbench ] && echo "$SCALE" || echo "-")
rows=$ROWS
bytes=$BYTES
snapshot_workers=$WORKERS
chunk_rows=${CHUNK_ROWS:-default}
apply_workers=${APPLY_WORKERS:-default}
snapshot_indexes=${SNAPSHOT_INDEXES:-default}
${OUT}native_seconds=$(fmt2 "$NAT_SECS")
native_rows_per_s=$(fmt0 "$(calc "$ROWS / $NAT_SECS")")
native_target_cpu_seconds=$(fmt2 "$NAT_DST_CPU")
native_source_cpu_seconds=$(fmt2 "$NAT_SRC_CPU")
pg_dump_restore_seconds=$(fmt2 "$DUMP_SECS")
ratio_best_cdcsync_to_native=$(printf '%.3f' "$(calc "$NAT_SECS / $best")")
ratio_best_cdcsync_to_dump_restore=$(printf '%.3f' "$(calc "$DUMP_SECS / $best")")
machine=$(machine_note)
date=$(date -u +%Y-%m-%dT%H:%MZ)
EOF
log "best cdcsync $(fmt2 "$best") s, native $(fmt2 "$NAT_SECS") s, pg_dump+pg_restore $(fmt2 "$DUMP_SECS") s; every target equals the source"
finish
