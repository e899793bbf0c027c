#!/usr/bin/env bash
# MariaDB as sink (PostgreSQL -> MariaDB) and as source (MariaDB -> PostgreSQL) under network and
# server faults, with write loads on both sources throughout: the MariaDB server reached through a
# TCP proxy that freezes (no FIN, no RST: both pipelines must notice, each blaming the right
# side, and lag must grow) and the server killed (kill -9) and started again. Every scenario ends
# with equal contents on both sides (keyless tables show a duplicate). timeout_s is 3 here to
# keep the suite short.
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/../integration/ops_lib.sh"
source "$(dirname "$0")/../integration/mylib.sh"
source "$(dirname "$0")/faults_lib.sh"
# mylib's metric takes a whole series; ops_lib's (NAME PIPELINE) is the one used here.
metric() { scrape | awk -v n="$1{pipeline=\"$2\"}" '$1 == n { print $2 }'; }

pg_start pg
my_start my 1
proxy_start my "$MY_my_PORT"
pg_load_tables pg a
my_load_tables my b
MPORT=$(free_port)
printf 'cdc-pw\n' >"$WORK/my.pass"
chmod 600 "$WORK/my.pass"
my_proxied() {
  printf 'type = mysql\nhost = 127.0.0.1\nport = %s\nuser = cdc\npassword_file = %s\ndatabase = test\nserver_id = %s\ntimeout_s = 3\n' \
    "$PROXY_my_PORT" "$WORK/my.pass" "$1"
}
# Two connectors per server (one per direction): two one-way pipelines, not a bidirectional pair.
write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" <<CONF
[connector.pg_src]
type = postgres
dsn = $(pg_dsn pg)
timeout_s = 3

[connector.pg_dst]
type = postgres
dsn = $(pg_dsn pg)
create_tables = yes
timeout_s = 3

[connector.my_dst]
$(my_proxied 9101)
create_tables = yes

[connector.my_src]
$(my_proxied 9102)

[pipeline.pg_my]
source = pg_src
sink = my_dst
tables = public.a, public.a_log
map = public.* -> test.*

[pipeline.my_pg]
source = my_src
sink = pg_dst
tables = test.b, test.b_log
map = test.* -> public.*
CONF
service_start
wait_for "pipeline pg_my streaming" 60 pipeline_streaming pg_my
wait_for "pipeline my_pg streaming" 60 pipeline_streaming my_pg
pg_load pg a
my_load my b

# Ordered contents of both directions, compared.
equal() {
  my_on my -e "SELECT CONCAT_WS(CHAR(9), CONCAT('v:', id), CONCAT('v:', v)) FROM a ORDER BY id" >"$WORK/my.a" &&
    psql_on pg -c "SELECT concat_ws(E'\t', 'v:' || id, 'v:' || v) FROM a ORDER BY id" >"$WORK/pg.a" &&
    rows_equal ss "$WORK/pg.a" "$WORK/my.a" &&
    my_on my -e "SELECT CONCAT('v:', v) FROM a_log ORDER BY v" >"$WORK/my.a_log" &&
    psql_on pg -c "SELECT 'v:' || v FROM a_log ORDER BY v COLLATE \"C\"" >"$WORK/pg.a_log" &&
    rows_equal s "$WORK/pg.a_log" "$WORK/my.a_log" &&
    my_on my -e "SELECT CONCAT_WS(CHAR(9), CONCAT('v:', id), CONCAT('v:', v)) FROM b ORDER BY id" >"$WORK/my.b" &&
    psql_on pg -c "SELECT concat_ws(E'\t', 'v:' || id, 'v:' || v) FROM b ORDER BY id" >"$WORK/pg.b" &&
    rows_equal ss "$WORK/my.b" "$WORK/pg.b" &&
    my_on my -e "SELECT CONCAT('v:', v) FROM b_log ORDER BY v" >"$WORK/my.b_log" &&
    psql_on pg -c "SELECT 'v:' || v FROM b_log ORDER BY v COLLATE \"C\"" >"$WORK/pg.b_log" &&
    rows_equal s "$WORK/my.b_log" "$WORK/pg.b_log"
}
synced() {
  stop_loads
  wait_for "equal contents both ways" 120 equal
  log "equal: a $(wc -l <"$WORK/pg.a") rows, a_log $(wc -l <"$WORK/pg.a_log"), b $(wc -l <"$WORK/my.b"), b_log $(wc -l <"$WORK/my.b_log")"
  pg_load pg a
  my_load my b
}
wait_for "rows arriving both ways" 60 sh -c "[ \"\$(psql -X -h $PG_pg_DIR -p $PG_pg_PORT -U postgres -d postgres -qAt -c 'SELECT count(*) FROM b' 2>/dev/null || echo 0)\" -gt 10 ] && [ \"\$(mariadb --socket=$MY_my_DIR/mysql.sock -uroot -N -B test -e 'SELECT count(*) FROM a' 2>/dev/null || echo 0)\" -gt 10 ]"

# ---- the MariaDB server behind a frozen path: a sink for one pipeline, a source for the other ----
fault=mysql_freeze
t0=$(now_s)
proxy_freeze my
# The source side: MariaDB goes on committing (directly), and my_pg's lag grows.
wait_for "$fault: my_pg lag above 2 s" 60 lag_above my_pg 2
l1=$(metric cdcsync_pipeline_lag_seconds my_pg)
wait_for "$fault: my_pg lag growing" 30 lag_above my_pg "$l1"
detect pg_my "${fault}_sink" "$t0"
result "${fault}_sink" "detect_s=$DETECT_S"
detect my_pg "${fault}_source" "$t0"
result "${fault}_source" "detect_s=$DETECT_S"
msg=$(last_error pg_my)
log "$fault: pg_my: $msg"
case "$msg" in *my_dst*) ;; *) fail "$fault: pg_my's error does not name its sink my_dst: $msg" ;; esac
msg=$(last_error my_pg)
log "$fault: my_pg: $msg"
case "$msg" in *my_src*) ;; *) fail "$fault: my_pg's error does not name its source my_src: $msg" ;; esac
t1=$(now_s)
proxy_thaw my
recover pg_my "${fault}_sink" "$t1"
r1=$RECOVER_S
recover my_pg "${fault}_source" "$t1"
synced
result "$fault" "recover_s=$r1 (pg_my) $RECOVER_S (my_pg)"

# ---- the MariaDB server killed and started again ----
fault=mysql_kill9
t0=$(now_s)
my_kill_server my
detect my_pg "$fault" "$t0"
wait_for "$fault: my_pg lag above 1 s with the server down" 30 lag_above my_pg 1
wait_for "$fault: pg_my lag above 1 s with the server down" 30 lag_above pg_my 1
log "$fault: lag my_pg $(metric cdcsync_pipeline_lag_seconds my_pg) s, pg_my $(metric cdcsync_pipeline_lag_seconds pg_my) s / $(metric cdcsync_pipeline_lag_bytes pg_my) B"
t1=$(now_s)
my_start_again my 1
recover pg_my "$fault" "$t1"
r1=$RECOVER_S
recover my_pg "$fault" "$t1"
synced
result "$fault" "detect_s=$DETECT_S recover_s=$r1 (pg_my) $RECOVER_S (my_pg)"

stop_loads
service_stop
finish
