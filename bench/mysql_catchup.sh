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

SRCDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CDCSYNC=${CDCSYNC:-$SRCDIR/build/cdcsync}
TXNS=${TXNS:-50000}
BIG_TXNS=${BIG_TXNS:-6}
BIG_ROWS=${BIG_ROWS:-50000}
NROWS=${NROWS:-100000}
BATCH_MAX_ROWS=${BATCH_MAX_ROWS:-5000}
CROSS=${CROSS:-1}
WORK=$(mktemp -d /tmp/cdcsync-mybench.XXXXXX)
chmod 755 "$WORK"
SERVICE_PID=""
MYSERVERS=()
PGCLUSTERS=()

say() { printf '[mybench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "FAIL: $*"; exit 1; }

cleanup() {
  local rc=$?
  [ -n "$SERVICE_PID" ] && kill -9 "$SERVICE_PID" 2>/dev/null || true
  for d in "${MYSERVERS[@]}"; do bash "$SRCDIR/scripts/mysql.sh" stop "$d" || true; done
  for d in "${PGCLUSTERS[@]}"; do bash "$SRCDIR/scripts/pg.sh" stop "$d" || true; done
  if [ $rc -ne 0 ] && [ -f "$WORK/service.log" ]; then tail -n 30 "$WORK/service.log" >&2; fi
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

[ -x "$CDCSYNC" ] || die "no cdcsync binary at $CDCSYNC (build first, or set CDCSYNC)"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

declare -A PORT
start_my() { # NAME SERVER_ID
  PORT[$1]=$(free_port)
  MYSQL_SERVER_ID=$2 bash "$SRCDIR/scripts/mysql.sh" start "$WORK/my_$1" "${PORT[$1]}" >/dev/null
  MYSERVERS+=("$WORK/my_$1")
}
start_pg() {
  PORT[$1]=$(free_port)
  bash "$SRCDIR/scripts/pg.sh" start "$WORK/pg_$1" "${PORT[$1]}"
  PGCLUSTERS+=("$WORK/pg_$1")
}

# my NAME [DATABASE] [mariadb args...] — root over the socket, batch output.
my() {
  local name=$1 db=${2:-test}
  shift 2
  mariadb --socket="$WORK/my_$name/mysql.sock" -uroot -N -B --database="$db" "$@"
}
pg() {
  local name=$1
  shift
  psql -X -h 127.0.0.1 -p "${PORT[$name]}" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 "$@"
}

now() { date +%s.%N; }

# CPU seconds (user + system) used so far by process $1.
cpu_of() {
  local ut st
  read -r ut st < <(awk '{print $14, $15}' "/proc/$1/stat")
  echo "($ut + $st) / $(getconf CLK_TCK)" | bc -l
}
mypid() { cat "$WORK/my_$1/mysqld.pid"; }

# The same text form of a row on both systems: id,k,v,YYYY-MM-DD HH:MM:SS; count:md5 per table.
my_digest() { # NAME DATABASE
  my "$1" "$2" -e "SET SESSION group_concat_max_len = 1073741824;
    SELECT CONCAT((SELECT CONCAT(COUNT(*), ':', IFNULL(MD5(GROUP_CONCAT(CONCAT_WS(',', id, k, v, DATE_FORMAT(at, '%Y-%m-%d %H:%i:%s'))
                   ORDER BY id SEPARATOR '\n')), '')) FROM bench_rows), ' ',
                  (SELECT CONCAT(COUNT(*), ':', IFNULL(MD5(GROUP_CONCAT(CONCAT_WS(',', id, total) ORDER BY id SEPARATOR '\n')), ''))
                   FROM bench_hot))"
}
pg_digest() { # NAME SCHEMA
  pg "$1" -c "SELECT (SELECT count(*) || ':' || coalesce(md5(string_agg(concat_ws(',', id, k, v, to_char(at, 'YYYY-MM-DD HH24:MI:SS')),
                                 E'\n' ORDER BY id)), '') FROM $2.bench_rows) || ' ' ||
                     (SELECT count(*) || ':' || coalesce(md5(string_agg(concat_ws(',', id, total), E'\n' ORDER BY id)), '')
                      FROM $2.bench_hot)"
}

# wait_marker KIND NAME WHERE T0 — waits until the marker row (the backlog's last transaction) is
# on the target; commit order means everything before it is applied too. Prints seconds since T0.
wait_marker() {
  local kind=$1 name=$2 where=$3 t0=$4 limit=${LIMIT:-1800} n
  while :; do
    if [ "$kind" = my ]; then
      n=$(my "$name" "$where" -e "SELECT COUNT(*) FROM bench_done" 2>/dev/null || echo 0)
    else
      n=$(pg "$name" -c "SELECT count(*) FROM $where.bench_done" 2>/dev/null || echo 0)
    fi
    if [ "$n" = 1 ]; then
      echo "$(now) - $t0" | bc -l
      return 0
    fi
    if [ -n "$SERVICE_PID" ] && ! kill -0 "$SERVICE_PID" 2>/dev/null; then die "cdcsync exited"; fi
    [ "$(echo "$(now) - $t0 > $limit" | bc -l)" = 0 ] || die "$name did not catch up within $limit s"
    sleep 0.05
  done
}

# run_cdcsync CONF KIND NAME WHERE — runs the service on CONF until the marker is on the target;
# sets SECS, CPU (cdcsync's CPU seconds) and HWM (its peak RSS, kB).
run_cdcsync() {
  local t0
  t0=$(now)
  "$CDCSYNC" -c "$1" run >>"$WORK/service.log" 2>&1 &
  SERVICE_PID=$!
  SECS=$(wait_marker "$2" "$3" "$4" "$t0")
  HWM=$(awk '/VmHWM/ {print $2}' "/proc/$SERVICE_PID/status")
  CPU=$(cpu_of "$SERVICE_PID")
  kill -TERM "$SERVICE_PID"
  wait "$SERVICE_PID" || true
  SERVICE_PID=""
}

printf 'cdc-pw\n' >"$WORK/cdc.pass"
chmod 600 "$WORK/cdc.pass"
my_connector() { # NAME SERVER_ID DATABASE
  printf 'type = mysql\nhost = 127.0.0.1\nport = %s\nuser = cdc\npassword_file = %s\ndatabase = %s\nserver_id = %s\n' \
    "${PORT[$1]}" "$WORK/cdc.pass" "$3" "$2"
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

say "starting 3 MariaDB 10.11 servers (identical settings, targets differ only in server_id)$([ "$CROSS" = 1 ] && echo ' and 1 PostgreSQL 15 cluster')"
start_my src 1
start_my cdc 2
start_my nat 3
# The targets get the schema and rows outside their binlog: neither has history of its own.
my src test -e "$MY_SCHEMA $MY_FILL"
for t in cdc nat; do my $t test -e "SET SESSION sql_log_bin = 0; $MY_SCHEMA $MY_FILL"; done

read -r BFILE BPOS < <(my src test -e "SHOW MASTER STATUS" | awk '{print $1, $2}')
[ -n "$BPOS" ] || die "no binlog position on the source"

say "building the MySQL backlog from $BFILE:$BPOS: $TXNS small transactions + $BIG_TXNS large ones of $BIG_ROWS rows"
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
my src test <"$WORK/client0.sql" &
c0=$!
my src test <"$WORK/client1.sql" || die "client 1"
wait $c0 || die "client 0"
for i in $(seq 1 "$BIG_TXNS"); do
  case $((i % 3)) in
  1) my src test -e "UPDATE bench_rows SET k = k + 1, v = MD5(CONCAT(v, '$i')) ORDER BY MD5(CONCAT(id, '$i')) LIMIT $BIG_ROWS" ;;
  2) my src test -e "INSERT INTO bench_rows (id, k, v) SELECT $((10000000 + i * BIG_ROWS)) + seq, seq, MD5(seq) FROM seq_1_to_$BIG_ROWS" ;;
  0) my src test -e "DELETE FROM bench_rows ORDER BY MD5(CONCAT(id, '$i')) LIMIT $BIG_ROWS" ;;
  esac
done
my src test -e "INSERT INTO bench_done VALUES (1)"
XACTS=$((TXNS + BIG_TXNS + 1))
read -r EFILE EPOS < <(my src test -e "SHOW MASTER STATUS" | awk '{print $1, $2}')
# Row changes of the backlog: its row events, decoded by the server's own binlog reader.
[ "$EFILE" = "$BFILE" ] || die "the backlog spans binlog files $BFILE..$EFILE: keep it smaller"
ROWS=$(mariadb-binlog --read-from-remote-server --socket="$WORK/my_src/mysql.sock" -uroot \
         --start-position="$BPOS" --stop-position="$EPOS" --base64-output=decode-rows -v "$BFILE" |
       grep -cE '^### (INSERT INTO|UPDATE|DELETE FROM) `test`\.`bench_') || die "cannot read the backlog's binlog"
BINLOG=$((EPOS - BPOS))
SRC_DIGEST=$(my_digest src test)
say "backlog: $ROWS row changes in $XACTS transactions, binlog $BFILE:$BPOS → $EFILE:$EPOS"

# ---- cdcsync, MySQL → MySQL ----
cat >"$WORK/m2m.conf" <<CONF
[service]
state_dir = $WORK/state_m2m
metrics_listen = off
log_level = ${LOG_LEVEL:-info}

[connector.msrc]
$(my_connector src 9001 test)

[connector.mdst]
$(my_connector cdc 9002 test)

[pipeline.m2m]
source = msrc
sink = mdst
tables = test.bench_rows, test.bench_hot, test.bench_done
snapshot = never
start_position = $BFILE:$BPOS
batch_max_rows = $BATCH_MAX_ROWS
CONF
chmod 600 "$WORK/m2m.conf"
say "cdcsync mysql→mysql: catching up"
SRV0=$(cpu_of "$(mypid cdc)")
run_cdcsync "$WORK/m2m.conf" my cdc test
M2M_SECS=$SECS M2M_CPU=$CPU M2M_HWM=$HWM
M2M_SRV=$(echo "$(cpu_of "$(mypid cdc)") - $SRV0" | bc -l)
[ "$(my_digest cdc test)" = "$SRC_DIGEST" ] || die "cdcsync's target differs from the source: $(my_digest cdc test) vs $SRC_DIGEST"

# ---- MariaDB replication ----
say "native replica: catching up"
SRV0=$(cpu_of "$(mypid nat)")
t0=$(now)
my nat test -e "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = ${PORT[src]}, MASTER_USER = 'cdc',
                MASTER_PASSWORD = 'cdc-pw', MASTER_LOG_FILE = '$BFILE', MASTER_LOG_POS = $BPOS, MASTER_USE_GTID = no;
                START SLAVE"
NAT_SECS=$(wait_marker my nat test "$t0")
NAT_SRV=$(echo "$(cpu_of "$(mypid nat)") - $SRV0" | bc -l)
my nat test -e "STOP SLAVE"
[ "$(my_digest nat test)" = "$SRC_DIGEST" ] || die "native target differs from the source: $(my_digest nat test) vs $SRC_DIGEST"

f() { printf '%.0f' "$1"; }
f2() { printf '%.2f' "$1"; }
M2M_RPS=$(echo "$ROWS / $M2M_SECS" | bc -l)
NAT_RPS=$(echo "$ROWS / $NAT_SECS" | bc -l)
RATIO=$(echo "$NAT_SECS / $M2M_SECS" | bc -l)
cat <<OUT
backlog_rows=$ROWS
backlog_txns=$XACTS
backlog_binlog_bytes=$BINLOG
batch_max_rows=$BATCH_MAX_ROWS
mysql_to_mysql_seconds=$(f2 "$M2M_SECS")
mysql_to_mysql_rows_per_s=$(f "$M2M_RPS")
mysql_to_mysql_txns_per_s=$(f "$(echo "$XACTS / $M2M_SECS" | bc -l)")
mysql_to_mysql_cpu_seconds=$(f2 "$M2M_CPU")
mysql_to_mysql_target_server_cpu_seconds=$(f2 "$M2M_SRV")
mysql_to_mysql_peak_rss_kb=$M2M_HWM
native_seconds=$(f2 "$NAT_SECS")
native_rows_per_s=$(f "$NAT_RPS")
native_txns_per_s=$(f "$(echo "$XACTS / $NAT_SECS" | bc -l)")
native_target_server_cpu_seconds=$(f2 "$NAT_SRV")
ratio_cdcsync_to_native=$(printf '%.3f' "$RATIO")
OUT
say "mysql→mysql: cdcsync $(f "$M2M_RPS") rows/s in $(printf '%.1f' "$M2M_SECS") s (peak RSS $((M2M_HWM / 1024)) MB);" \
    "MariaDB replica: $(f "$NAT_RPS") rows/s in $(printf '%.1f' "$NAT_SECS") s; cdcsync/native = $(f2 "$RATIO")x;" \
    "both targets equal the source"
[ "$CROSS" = 1 ] || exit 0

# ---- cdcsync, PostgreSQL → MySQL ----
start_pg pg
pg pg -c "$PG_SCHEMA $PG_FILL"
pg pg -c "CREATE SEQUENCE bench_ids START $((NROWS + 1))"
pg pg <<'SQL'
CREATE PUBLICATION bench_pub FOR TABLE bench_rows, bench_hot, bench_done;
SELECT FROM pg_create_logical_replication_slot('cdcsync_bench', 'pgoutput');
SQL
my cdc test -e "CREATE DATABASE test_pg"
my cdc test_pg -e "$MY_SCHEMA $MY_FILL"
say "building the PostgreSQL backlog: $TXNS pgbench transactions + $BIG_TXNS large ones of $BIG_ROWS rows"
pgbench -n -h 127.0.0.1 -p "${PORT[pg]}" -U postgres -c 2 -j 2 -t $((TXNS / 2)) -D nrows="$NROWS" \
  -f "$SRCDIR/bench/workload.sql" postgres >"$WORK/pgbench.log" 2>&1 || { cat "$WORK/pgbench.log" >&2; die "pgbench"; }
for i in $(seq 1 "$BIG_TXNS"); do
  case $((i % 3)) in
  1) pg pg -c "UPDATE bench_rows SET k = k + 1, v = md5(v || '$i') WHERE id IN (SELECT id FROM bench_rows ORDER BY md5(id::text || '$i') LIMIT $BIG_ROWS)" ;;
  2) pg pg -c "INSERT INTO bench_rows (id, k, v) SELECT nextval('bench_ids'), g, md5(g::text) FROM generate_series(1, $BIG_ROWS) g" ;;
  0) pg pg -c "DELETE FROM bench_rows WHERE id IN (SELECT id FROM bench_rows ORDER BY md5(id::text || '$i') LIMIT $BIG_ROWS)" ;;
  esac
done
pg pg -c "INSERT INTO bench_done VALUES (1)"
sleep 1
PG_ROWS=$(pg pg -c "SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) - $NROWS - 100 FROM pg_stat_user_tables WHERE relname LIKE 'bench_%'")
PG_SRC_DIGEST=$(pg_digest pg public)
cat >"$WORK/p2m.conf" <<CONF
[service]
state_dir = $WORK/state_p2m
metrics_listen = off
log_level = ${LOG_LEVEL:-info}

[connector.psrc]
type = postgres
dsn = host=127.0.0.1 port=${PORT[pg]} user=postgres dbname=postgres
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
chmod 600 "$WORK/p2m.conf"
say "cdcsync pg→mysql: catching up ($PG_ROWS row changes)"
run_cdcsync "$WORK/p2m.conf" my cdc test_pg
P2M_SECS=$SECS P2M_CPU=$CPU
[ "$(my_digest cdc test_pg)" = "$PG_SRC_DIGEST" ] || die "pg→mysql target differs from the source: $(my_digest cdc test_pg) vs $PG_SRC_DIGEST"

# ---- cdcsync, MySQL → PostgreSQL (the MySQL backlog again) ----
pg pg -c "CREATE SCHEMA test; SET search_path = test; $PG_SCHEMA $PG_FILL"
cat >"$WORK/m2p.conf" <<CONF
[service]
state_dir = $WORK/state_m2p
metrics_listen = off
log_level = ${LOG_LEVEL:-info}

[connector.msrc]
$(my_connector src 9003 test)

[connector.pdst]
type = postgres
dsn = host=127.0.0.1 port=${PORT[pg]} user=postgres dbname=postgres

[pipeline.m2p]
source = msrc
sink = pdst
tables = test.bench_rows, test.bench_hot, test.bench_done
snapshot = never
start_position = $BFILE:$BPOS
batch_max_rows = $BATCH_MAX_ROWS
CONF
chmod 600 "$WORK/m2p.conf"
say "cdcsync mysql→pg: catching up"
run_cdcsync "$WORK/m2p.conf" pg pg test
M2P_SECS=$SECS M2P_CPU=$CPU
[ "$(pg_digest pg test)" = "$SRC_DIGEST" ] || die "mysql→pg target differs from the source: $(pg_digest pg test) vs $SRC_DIGEST"

P2M_RPS=$(echo "$PG_ROWS / $P2M_SECS" | bc -l)
M2P_RPS=$(echo "$ROWS / $M2P_SECS" | bc -l)
cat <<OUT
pg_backlog_rows=$PG_ROWS
pg_to_mysql_seconds=$(f2 "$P2M_SECS")
pg_to_mysql_rows_per_s=$(f "$P2M_RPS")
pg_to_mysql_cpu_seconds=$(f2 "$P2M_CPU")
mysql_to_pg_seconds=$(f2 "$M2P_SECS")
mysql_to_pg_rows_per_s=$(f "$M2P_RPS")
mysql_to_pg_cpu_seconds=$(f2 "$M2P_CPU")
OUT
say "pg→mysql: $(f "$P2M_RPS") rows/s in $(printf '%.1f' "$P2M_SECS") s; mysql→pg: $(f "$M2P_RPS") rows/s in" \
    "$(printf '%.1f' "$M2P_SECS") s; both targets equal their source"
