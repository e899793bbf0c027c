#!/usr/bin/env bash
# Catch-up benchmark, MySQL/MariaDB: cdcsync against MariaDB's own replication, applying the same
# binlog backlog from the same start position; beside it, cdcsync's PostgreSQL → MySQL and
# MySQL → PostgreSQL rates on backlogs of the same shape.
#
#   bench/mysql_catchup.sh         (env: TXNS, BIG_TXNS, BIG_ROWS, NROWS, BATCH_MAX_ROWS,
#                                   CDCSYNC=path/to/cdcsync, CROSS=0 skips the PG legs,
#                                   KEEP_WORK=1 keeps the temp dir)
#
# One run: three throwaway MariaDB 10.11 servers (scripts/mysql.sh: the same settings on all, log_bin
# and innodb_flush_log_at_trx_commit = 2; the two targets differ only in server_id) and one
# PostgreSQL 15 cluster (scripts/pg.sh). The MySQL backlog, written after the binlog position
# FILE:POS is noted: TXNS small transactions of 4 statements from 2 concurrent clients (like
# bench/workload.sql: update, insert, delete, hot-row update — the hot row last so the two
# clients cannot deadlock) plus BIG_TXNS large transactions (BIG_ROWS-row update, insert, delete
# in turn), then a marker row. One after the other, never concurrently:
#   mysql→mysql  cdcsync, snapshot = never, start_position = FILE:POS
#   native       a MariaDB replica: CHANGE MASTER TO ... MASTER_LOG_FILE/POS = the same FILE:POS
#   pg→mysql     cdcsync from a slot created before a pgbench backlog (bench/workload.sql, same sizes)
#   mysql→pg     cdcsync, the MySQL backlog again, from FILE:POS into PostgreSQL
# Each is timed until the marker row is committed on its target, and every target must then equal
# its source (count and md5 of the ordered contents, the same text form on both systems) or the
# bench fails. What differs by nature: cdcsync's target logs what it applies in its binlog (it is
# a client; a reverse pipeline reads it back), the replica does not (log_slave_updates = OFF, the
# default). The replica applies with one SQL thread (slave_parallel_threads = 0, the default).
#
# Output: `key=value` lines on stdout (machine-readable), a human summary on stderr.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TXNS=${TXNS:-50000}
BIG_TXNS=${BIG_TXNS:-6}
BIG_ROWS=${BIG_ROWS:-50000}
NROWS=${NROWS:-100000}
BATCH_MAX_ROWS=${BATCH_MAX_ROWS:-5000}
CROSS=${CROSS:-1}
LIMIT=${LIMIT:-1800}

# The same text form of a row on both systems: id,k,v,YYYY-MM-DD HH:MM:SS; count:md5 per table.
my_text_digest() { # NAME DATABASE
  my_on "$1" --database="$2" -e "SET SESSION group_concat_max_len = 1073741824;
    SELECT CONCAT((SELECT CONCAT(COUNT(*), ':', IFNULL(MD5(GROUP_CONCAT(CONCAT_WS(',', id, k, v, DATE_FORMAT(at, '%Y-%m-%d %H:%i:%s'))
                   ORDER BY id SEPARATOR '\n')), '')) FROM bench_rows), ' ',
                  (SELECT CONCAT(COUNT(*), ':', IFNULL(MD5(GROUP_CONCAT(CONCAT_WS(',', id, total) ORDER BY id SEPARATOR '\n')), ''))
                   FROM bench_hot))"
}
pg_text_digest() { # NAME SCHEMA
  psql_on "$1" -c "SELECT (SELECT count(*) || ':' || coalesce(md5(string_agg(concat_ws(',', id, k, v, to_char(at, 'YYYY-MM-DD HH24:MI:SS')),
                                 E'\n' ORDER BY id)), '') FROM $2.bench_rows) || ' ' ||
                     (SELECT count(*) || ':' || coalesce(md5(string_agg(concat_ws(',', id, total), E'\n' ORDER BY id)), '')
                      FROM $2.bench_hot)"
}

# run_cdcsync CONF KIND NAME WHERE — runs the service on CONF until the marker is on target NAME
# (KIND my or pg, WHERE its database or schema); sets SECS, CPU (cdcsync's CPU seconds) and HWM
# (its peak RSS, kB). Each run has a state store of its own, kept as state_<CONF's name>.
run_cdcsync() {
  local t0
  t0=$(now)
  service_start "$1"
  wait_marker "$2" "$3" "$4" >/dev/null
  SECS=$(calc "$(now) - $t0")
  HWM=$(peak_rss_kb "$SERVICE_PID")
  CPU=$(cpu_tree "$SERVICE_PID")
  service_stop
  mv "$WORK/state" "$WORK/state_$(basename "$1" .conf)"
}

MY_SCHEMA="
CREATE TABLE bench_rows (id BIGINT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64) NOT NULL,
                         at DATETIME(6) NOT NULL DEFAULT '2024-01-01 00:00:00') ENGINE=InnoDB;
CREATE TABLE bench_hot (id INT PRIMARY KEY, total BIGINT NOT NULL) ENGINE=InnoDB;
CREATE TABLE bench_done (id INT PRIMARY KEY) ENGINE=InnoDB;"
MY_FILL="
INSERT INTO bench_rows (id, k, v) SELECT seq, seq % 1000, MD5(seq) FROM seq_1_to_$NROWS;
INSERT INTO bench_hot SELECT seq, 0 FROM seq_1_to_100;"
PG_SCHEMA="
CREATE TABLE IF NOT EXISTS bench_rows (id bigint PRIMARY KEY, k int NOT NULL, v text NOT NULL,
                                       at timestamp NOT NULL DEFAULT '2024-01-01');
CREATE TABLE IF NOT EXISTS bench_hot (id int PRIMARY KEY, total bigint NOT NULL);
CREATE TABLE IF NOT EXISTS bench_done (id int PRIMARY KEY);"
PG_FILL="
INSERT INTO bench_rows (id, k, v) SELECT g, g % 1000, md5(g::text) FROM generate_series(1, $NROWS) g;
INSERT INTO bench_hot SELECT g, 0 FROM generate_series(1, 100) g;"

log "starting 3 MariaDB 10.11 servers (identical settings, targets differ only in server_id)$([ "$CROSS" = 1 ] && echo ' and 1 PostgreSQL 15 cluster')"
my_start src 1
my_start cdc 2
my_start nat 3
# The targets get the schema and rows outside their binlog: neither has history of its own.
my_on src -e "$MY_SCHEMA $MY_FILL"
for t in cdc nat; do my_on $t -e "SET SESSION sql_log_bin = 0; $MY_SCHEMA $MY_FILL"; done

read -r BFILE BPOS < <(my_on src -e "SHOW MASTER STATUS" | awk '{print $1, $2}')
[ -n "$BPOS" ] || fail "no binlog position on the source"

log "building the MySQL backlog from $BFILE:$BPOS: $TXNS small transactions + $BIG_TXNS large ones of $BIG_ROWS rows"
# Two clients, as pgbench -c 2: each its own script of transactions with its own new ids.
python3 - "$WORK" "$TXNS" "$NROWS" <<'PY'
import random, sys
work, txns, nrows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for c in range(2):
    rnd = random.Random(c + 1)
    with open(f"{work}/client{c}.sql", "w") as f:
        for j in range(txns // 2):
            aid, bid, did = rnd.randint(1, nrows), rnd.randint(1, 100), rnd.randint(1, nrows)
            nid = nrows + 1 + 2 * j + c
            f.write(f"BEGIN; UPDATE bench_rows SET k = k + 1, v = MD5(v) WHERE id = {aid}; "
                    f"INSERT INTO bench_rows (id, k, v) VALUES ({nid}, {aid}, MD5({aid})); "
                    f"DELETE FROM bench_rows WHERE id = {did}; "
                    f"UPDATE bench_hot SET total = total + {aid} WHERE id = {bid}; COMMIT;\n")
PY
my_on src <"$WORK/client0.sql" &
c0=$!
my_on src <"$WORK/client1.sql" || fail "client 1"
wait $c0 || fail "client 0"
for i in $(seq 1 "$BIG_TXNS"); do
  case $((i % 3)) in
  1) my_on src -e "UPDATE bench_rows SET k = k + 1, v = MD5(CONCAT(v, '$i')) ORDER BY MD5(CONCAT(id, '$i')) LIMIT $BIG_ROWS" ;;
  2) my_on src -e "INSERT INTO bench_rows (id, k, v) SELECT $((10000000 + i * BIG_ROWS)) + seq, seq, MD5(seq) FROM seq_1_to_$BIG_ROWS" ;;
  0) my_on src -e "DELETE FROM bench_rows ORDER BY MD5(CONCAT(id, '$i')) LIMIT $BIG_ROWS" ;;
  esac
done
my_on src -e "INSERT INTO bench_done VALUES (1)"
XACTS=$((TXNS + BIG_TXNS + 1))
read -r EFILE EPOS < <(my_on src -e "SHOW MASTER STATUS" | awk '{print $1, $2}')
# Row changes of the backlog: its row events, decoded by the server's own binlog reader.
[ "$EFILE" = "$BFILE" ] || fail "the backlog spans binlog files $BFILE..$EFILE: keep it smaller"
ROWS=$(mariadb-binlog --read-from-remote-server --socket="$MY_src_DIR/mysql.sock" -uroot \
         --start-position="$BPOS" --stop-position="$EPOS" --base64-output=decode-rows -v "$BFILE" |
       grep -cE '^### (INSERT INTO|UPDATE|DELETE FROM) `test`\.`bench_') || fail "cannot read the backlog's binlog"
BINLOG=$((EPOS - BPOS))
SRC_DIGEST=$(my_text_digest src test)
log "backlog: $ROWS row changes in $XACTS transactions, binlog $BFILE:$BPOS → $EFILE:$EPOS"

# ---- cdcsync, MySQL → MySQL ----
write_conf "$WORK/m2m.conf" off "${LOG_LEVEL:-info}" <<CONF
[connector.msrc]
$(my_connector src 9001)

[connector.mdst]
$(my_connector cdc 9002)

[pipeline.m2m]
source = msrc
sink = mdst
tables = test.bench_rows, test.bench_hot, test.bench_done
snapshot = never
start_position = $BFILE:$BPOS
batch_max_rows = $BATCH_MAX_ROWS
CONF
log "cdcsync mysql→mysql: catching up"
SRV0=$(cpu_tree "$(my_server_pid "$MY_cdc_DIR")")
run_cdcsync "$WORK/m2m.conf" my cdc test
M2M_SECS=$SECS M2M_CPU=$CPU M2M_HWM=$HWM
M2M_SRV=$(calc "$(cpu_tree "$(my_server_pid "$MY_cdc_DIR")") - $SRV0")
[ "$(my_text_digest cdc test)" = "$SRC_DIGEST" ] || fail "cdcsync's target differs from the source: $(my_text_digest cdc test) vs $SRC_DIGEST"

# ---- MariaDB replication ----
log "native replica: catching up"
SRV0=$(cpu_tree "$(my_server_pid "$MY_nat_DIR")")
t0=$(now)
my_on nat -e "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = $MY_src_PORT, MASTER_USER = 'cdc',
              MASTER_PASSWORD = 'cdc-pw', MASTER_LOG_FILE = '$BFILE', MASTER_LOG_POS = $BPOS, MASTER_USE_GTID = no;
              START SLAVE"
wait_marker my nat >/dev/null
NAT_SECS=$(calc "$(now) - $t0")
NAT_SRV=$(calc "$(cpu_tree "$(my_server_pid "$MY_nat_DIR")") - $SRV0")
my_on nat -e "STOP SLAVE"
[ "$(my_text_digest nat test)" = "$SRC_DIGEST" ] || fail "native target differs from the source: $(my_text_digest nat test) vs $SRC_DIGEST"

M2M_RPS=$(calc "$ROWS / $M2M_SECS")
NAT_RPS=$(calc "$ROWS / $NAT_SECS")
RATIO=$(calc "$NAT_SECS / $M2M_SECS")
cat <<OUT
backlog_rows=$ROWS
backlog_txns=$XACTS
backlog_binlog_bytes=$BINLOG
batch_max_rows=$BATCH_MAX_ROWS
mysql_to_mysql_seconds=$(fmt2 "$M2M_SECS")
mysql_to_mysql_rows_per_s=$(fmt0 "$M2M_RPS")
mysql_to_mysql_txns_per_s=$(fmt0 "$(calc "$XACTS / $M2M_SECS")")
mysql_to_mysql_cpu_seconds=$(fmt2 "$M2M_CPU")
mysql_to_mysql_target_server_cpu_seconds=$(fmt2 "$M2M_SRV")
mysql_to_mysql_peak_rss_kb=$M2M_HWM
native_seconds=$(fmt2 "$NAT_SECS")
native_rows_per_s=$(fmt0 "$NAT_RPS")
native_txns_per_s=$(fmt0 "$(calc "$XACTS / $NAT_SECS")")
native_target_server_cpu_seconds=$(fmt2 "$NAT_SRV")
ratio_cdcsync_to_native=$(printf '%.3f' "$RATIO")
OUT
log "mysql→mysql: cdcsync $(fmt0 "$M2M_RPS") rows/s in $(printf '%.1f' "$M2M_SECS") s (peak RSS $((M2M_HWM / 1024)) MB);" \
  "MariaDB replica: $(fmt0 "$NAT_RPS") rows/s in $(printf '%.1f' "$NAT_SECS") s; cdcsync/native = $(fmt2 "$RATIO")x;" \
  "both targets equal the source"
if [ "$CROSS" != 1 ]; then
  finish
  exit 0
fi

# ---- cdcsync, PostgreSQL → MySQL ----
pg_start pg
psql_on pg -c "$PG_SCHEMA $PG_FILL"
psql_on pg -c "CREATE SEQUENCE bench_ids START $((NROWS + 1))"
psql_on pg <<'SQL'
CREATE PUBLICATION bench_pub FOR TABLE bench_rows, bench_hot, bench_done;
SELECT FROM pg_create_logical_replication_slot('cdcsync_bench', 'pgoutput');
SQL
my_on cdc -e "CREATE DATABASE test_pg"
my_on cdc --database=test_pg -e "$MY_SCHEMA $MY_FILL"
log "building the PostgreSQL backlog: $TXNS pgbench transactions + $BIG_TXNS large ones of $BIG_ROWS rows"
pgbench -n -h 127.0.0.1 -p "$PG_pg_PORT" -U postgres -c 2 -j 2 -t $((TXNS / 2)) -D nrows="$NROWS" \
  -f "$BENCH_DIR/workload.sql" postgres >"$WORK/pgbench.log" 2>&1 || { cat "$WORK/pgbench.log" >&2; fail "pgbench"; }
for i in $(seq 1 "$BIG_TXNS"); do
  case $((i % 3)) in
  1) psql_on pg -c "UPDATE bench_rows SET k = k + 1, v = md5(v || '$i') WHERE id IN (SELECT id FROM bench_rows ORDER BY md5(id::text || '$i') LIMIT $BIG_ROWS)" ;;
  2) psql_on pg -c "INSERT INTO bench_rows (id, k, v) SELECT nextval('bench_ids'), g, md5(g::text) FROM generate_series(1, $BIG_ROWS) g" ;;
  0) psql_on pg -c "DELETE FROM bench_rows WHERE id IN (SELECT id FROM bench_rows ORDER BY md5(id::text || '$i') LIMIT $BIG_ROWS)" ;;
  esac
done
psql_on pg -c "INSERT INTO bench_done VALUES (1)"
sleep 1
PG_ROWS=$(psql_on pg -c "SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) - $NROWS - 100 FROM pg_stat_user_tables WHERE relname LIKE 'bench_%'")
PG_SRC_DIGEST=$(pg_text_digest pg public)
write_conf "$WORK/p2m.conf" off "${LOG_LEVEL:-info}" <<CONF
[connector.psrc]
type = postgres
dsn = $(pg_dsn pg)
slot = cdcsync_bench
publication = bench_pub

[connector.mdst]
$(my_connector cdc 9002 test_pg)

[pipeline.p2m]
source = psrc
sink = mdst
tables = public.bench_rows, public.bench_hot, public.bench_done
snapshot = never
batch_max_rows = $BATCH_MAX_ROWS
CONF
log "cdcsync pg→mysql: catching up ($PG_ROWS row changes)"
run_cdcsync "$WORK/p2m.conf" my cdc test_pg
P2M_SECS=$SECS P2M_CPU=$CPU
[ "$(my_text_digest cdc test_pg)" = "$PG_SRC_DIGEST" ] || fail "pg→mysql target differs from the source: $(my_text_digest cdc test_pg) vs $PG_SRC_DIGEST"

# ---- cdcsync, MySQL → PostgreSQL (the MySQL backlog again) ----
psql_on pg -c "CREATE SCHEMA test; SET search_path = test; $PG_SCHEMA $PG_FILL"
write_conf "$WORK/m2p.conf" off "${LOG_LEVEL:-info}" <<CONF
[connector.msrc]
$(my_connector src 9003)

[connector.pdst]
type = postgres
dsn = $(pg_dsn pg)

[pipeline.m2p]
source = msrc
sink = pdst
tables = test.bench_rows, test.bench_hot, test.bench_done
snapshot = never
start_position = $BFILE:$BPOS
batch_max_rows = $BATCH_MAX_ROWS
CONF
log "cdcsync mysql→pg: catching up"
run_cdcsync "$WORK/m2p.conf" pg pg test
M2P_SECS=$SECS M2P_CPU=$CPU
[ "$(pg_text_digest pg test)" = "$SRC_DIGEST" ] || fail "mysql→pg target differs from the source: $(pg_text_digest pg test) vs $SRC_DIGEST"

P2M_RPS=$(calc "$PG_ROWS / $P2M_SECS")
M2P_RPS=$(calc "$ROWS / $M2P_SECS")
cat <<OUT
pg_backlog_rows=$PG_ROWS
pg_to_mysql_seconds=$(fmt2 "$P2M_SECS")
pg_to_mysql_rows_per_s=$(fmt0 "$P2M_RPS")
pg_to_mysql_cpu_seconds=$(fmt2 "$P2M_CPU")
mysql_to_pg_seconds=$(fmt2 "$M2P_SECS")
mysql_to_pg_rows_per_s=$(fmt0 "$M2P_RPS")
mysql_to_pg_cpu_seconds=$(fmt2 "$M2P_CPU")
OUT
log "pg→mysql: $(fmt0 "$P2M_RPS") rows/s in $(printf '%.1f' "$P2M_SECS") s; mysql→pg: $(fmt0 "$M2P_RPS") rows/s in" \
  "$(printf '%.1f' "$M2P_SECS") s; both targets equal their source"
finish
