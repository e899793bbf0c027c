#!/usr/bin/env bash
# MariaDB → MariaDB initial load (#14): sysbench's tables (TABLES × TABLE_SIZE rows), copied in
# one run by cdcsync's initial snapshot (once per snapshot_workers value) and by
# `mariadb-dump --single-transaction | mariadb`; every target is then checked equal to the source
# (CHECKSUM TABLE of every table).
#
#   bench/mysql_snapshot.sh   (env: TABLES=4, TABLE_SIZE=500000, WORKERS="1 2 4", CHUNK_ROWS
#                              (snapshot_chunk_rows, default the conf's), APPLY_WORKERS (apply_workers,
#                              default the conf's), CDCSYNC=path/to/cdcsync,
#                              KEEP_WORK=1)
#
# Servers: two MariaDB servers (scripts/mysql.sh, innodb_flush_log_at_trx_commit = 2 on both): the
# source, and one target server holding a database per run, each made from the source's schema
# (mariadb-dump --no-data: primary keys in place while loading, for both ways). The connector's
# user gets RELOAD, so snapshot_workers > 1 readers share one snapshot (BACKUP STAGE). cdcsync is
# timed from its start until the sink records every table as copied (cdcsync.tables), the dump
# from its start to the restore's end (one pipe: both run at once). Before each timed run both
# servers write their dirty pages out (my_quiesce), so no run pays for the flushing of another.
#
# Output: key=value lines on stdout (with the machine's load), a summary on stderr.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TABLES=${TABLES:-4}
TABLE_SIZE=${TABLE_SIZE:-500000}
WORKERS=${WORKERS:-"1 2 4"}
LIMIT=${LIMIT:-1800}
bash "$SRCDIR/scripts/deps.sh" sysbench || fail "cannot install sysbench (apt-get install sysbench)"
LIST=$(for i in $(seq 1 "$TABLES"); do printf 'sbtest%s ' "$i"; done)

my_pid() { local d="MY_${1}_DIR"; my_server_pid "${!d}"; }
digest() { # NAME DATABASE — CHECKSUM TABLE of every sysbench table
  # shellcheck disable=SC2086
  my_on "$1" --database="$2" -e "CHECKSUM TABLE $(echo $LIST | tr ' ' ',')" | awk '{sub(/^[^.]*\./, "", $1); printf "%s=%s ", $1, $2}'
}

log "starting 2 MariaDB servers (identical settings)"
my_start src 1
my_start dst 2
log "sysbench prepare: $TABLES tables of $TABLE_SIZE rows"
d="MY_src_DIR"
sysbench oltp_read_only --db-driver=mysql --mysql-socket="${!d}/mysql.sock" --mysql-user=root --mysql-db=test \
  --tables="$TABLES" --table_size="$TABLE_SIZE" --threads=1 prepare >"$WORK/prepare.log" 2>&1 ||
  { cat "$WORK/prepare.log" >&2; fail "sysbench prepare"; }
my_on src -e "ANALYZE TABLE $(echo $LIST | tr ' ' ',')" >/dev/null
my_on src -e "GRANT RELOAD ON *.* TO 'cdc'@'127.0.0.1', 'cdc'@'localhost'"
# shellcheck disable=SC2086
mariadb-dump --socket="$MY_src_DIR/mysql.sock" -uroot --no-data --skip-dump-date test $LIST >"$WORK/schema.sql"
SRC_DIGEST=$(digest src test)
ROWS=0
for t in $LIST; do ROWS=$((ROWS + $(my_on src -e "SELECT COUNT(*) FROM $t"))); done
BYTES=$(my_on src -e "SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'test'")
SRC_PID=$(my_pid src)
DST_PID=$(my_pid dst)
log "source: $ROWS rows, $((BYTES / 1048576)) MB with indexes"

new_target() { # DATABASE — an empty database with the source's schema (the cdc user may write test_*)
  my_on dst -e "CREATE DATABASE $1"
  my_on dst --database="$1" <"$WORK/schema.sql"
}

OUT=""
out() { OUT+="$1"$'\n'; }

# ---- cdcsync, once per snapshot_workers value ----
sid=51000
for w in $WORKERS; do
  db=test_cdc_w$w
  new_target "$db"
  {
    printf '[service]\nstate_dir = %s\nmetrics_listen = off\nlog_level = %s\n\n' "$WORK/state_$w" "${LOG_LEVEL:-info}"
    printf '[connector.src]\n'
    my_connector src $((sid++))
    printf '\n[connector.dst]\n'
    my_connector dst $((sid++)) "$db"
    printf '\n[pipeline.load_w%s]\nsource = src\nsink = dst\ntables = %s\nsnapshot_workers = %s\n' "$w" \
      "$(for t in $LIST; do printf 'test.%s, ' "$t"; done | sed 's/, $//')" "$w"
    [ -z "${CHUNK_ROWS:-}" ] || printf 'snapshot_chunk_rows = %s\n' "$CHUNK_ROWS"
    [ -z "${APPLY_WORKERS:-}" ] || printf 'apply_workers = %s\n' "$APPLY_WORKERS"
  } >"$WORK/cdcsync_$w.conf"
  chmod 600 "$WORK/cdcsync_$w.conf"
  my_quiesce src dst
  log "cdcsync, snapshot_workers = $w: initial load"
  s0=$(cpu_tree "$SRC_PID")
  d0=$(cpu_tree "$DST_PID")
  t0=$(now)
  service_start "$WORK/cdcsync_$w.conf"
  wait_query "cdcsync's copy into $db" "$LIMIT" \
    "SELECT COUNT(*) = $TABLES FROM cdcsync.tables WHERE pipeline = 'load_w$w' AND state = 'copied'" my_on dst >/dev/null
  secs=$(calc "$(now) - $t0")
  cpu=$(cpu_tree "$SERVICE_PID")
  rss=$(peak_rss_kb "$SERVICE_PID")
  dcpu=$(calc "$(cpu_tree "$DST_PID") - $d0")
  scpu=$(calc "$(cpu_tree "$SRC_PID") - $s0")
  service_stop
  grep -E "readers share one consistent snapshot|copying with one reader" "$WORK/service.log" | tail -1 >&2 || true
  [ "$(digest dst "$db")" = "$SRC_DIGEST" ] || fail "cdcsync's target $db differs from the source: $(digest dst "$db") vs $SRC_DIGEST"
  eval "CDC_SECS_$w=$secs"
  out "cdcsync_w${w}_seconds=$(fmt2 "$secs")"
  out "cdcsync_w${w}_rows_per_s=$(fmt0 "$(calc "$ROWS / $secs")")"
  out "cdcsync_w${w}_cpu_seconds=$(fmt2 "$cpu")"
  out "cdcsync_w${w}_target_cpu_seconds=$(fmt2 "$dcpu")"
  out "cdcsync_w${w}_source_cpu_seconds=$(fmt2 "$scpu")"
  out "cdcsync_w${w}_peak_rss_kb=$rss"
  log "cdcsync, snapshot_workers = $w: $(fmt2 "$secs") s, peak RSS $((rss / 1024)) MiB; target equals the source"
done

# ---- mariadb-dump | mariadb ----
my_on dst -e "CREATE DATABASE test_dump"
my_quiesce src dst
log "mariadb-dump --single-transaction | mariadb"
s0=$(cpu_tree "$SRC_PID")
d0=$(cpu_tree "$DST_PID")
t0=$(now)
# shellcheck disable=SC2086
mariadb-dump --socket="$MY_src_DIR/mysql.sock" -uroot --single-transaction --skip-dump-date test $LIST |
  mariadb --socket="$MY_dst_DIR/mysql.sock" -uroot --database=test_dump
DUMP_SECS=$(calc "$(now) - $t0")
DUMP_DST_CPU=$(calc "$(cpu_tree "$DST_PID") - $d0")
DUMP_SRC_CPU=$(calc "$(cpu_tree "$SRC_PID") - $s0")
[ "$(digest dst test_dump)" = "$SRC_DIGEST" ] || fail "the dump's target differs from the source"
log "mariadb-dump | mariadb: $(fmt2 "$DUMP_SECS") s; target equals the source"

best=""
for w in $WORKERS; do
  v="CDC_SECS_$w"
  if [ -z "$best" ] || [ "$(calc "${!v} < $best")" = 1 ]; then best=${!v}; fi
done
cat <<EOF
bench=mysql_initial_load
tables=$TABLES
table_size=$TABLE_SIZE
rows=$ROWS
bytes=$BYTES
snapshot_workers=$WORKERS
chunk_rows=${CHUNK_ROWS:-default}
apply_workers=${APPLY_WORKERS:-default}
${OUT}dump_restore_seconds=$(fmt2 "$DUMP_SECS")
dump_restore_rows_per_s=$(fmt0 "$(calc "$ROWS / $DUMP_SECS")")
dump_restore_target_cpu_seconds=$(fmt2 "$DUMP_DST_CPU")
dump_restore_source_cpu_seconds=$(fmt2 "$DUMP_SRC_CPU")
ratio_best_cdcsync_to_dump_restore=$(printf '%.3f' "$(calc "$DUMP_SECS / $best")")
machine=$(machine_note)
date=$(date -u +%Y-%m-%dT%H:%MZ)
EOF
log "best cdcsync $(fmt2 "$best") s, mariadb-dump | mariadb $(fmt2 "$DUMP_SECS") s; every target equals the source"
finish
