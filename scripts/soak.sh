#!/usr/bin/env bash
# The long crash test (on demand, not in CI): pgbench's TPC-B-like script (its own tables:
# pgbench_accounts, _branches, _tellers and pgbench_history, which has no primary key) runs
# TRANSACTIONS transactions on a PostgreSQL source while one service syncs it to PostgreSQL and
# to MariaDB, and is killed with kill -9 KILLS times during the run, each time restarted at once.
# At the end both targets must hold exactly the source's rows: every table is compared as a
# multiset of rows (a row lost, or applied twice — a duplicate in pgbench_history — is counted).
#
#   bash scripts/soak.sh                    # 100,000 transactions, 50 kills
#   TRANSACTIONS=20000 KILLS=10 bash scripts/soak.sh
#   CDCSYNC=build/cdcsync CLIENTS=4 RATE=800 KEEP_WORK=1 bash scripts/soak.sh
#
# Prints "SOAK key=value" lines; exit 0 only with 0 lost and 0 duplicated on both targets.
set -euo pipefail
cd "$(dirname "$0")/.."
SRCDIR=$PWD
CDCSYNC=${CDCSYNC:-$SRCDIR/build/cdcsync}
TRANSACTIONS=${TRANSACTIONS:-100000}
KILLS=${KILLS:-50}
CLIENTS=${CLIENTS:-4}
# pgbench runs at most this many transactions a second (all clients), so that the kills, each
# waiting for the sinks to make progress after the restart, spread over the whole run (about 3 s
# per kill); RATE=0: as fast as it goes.
RATE=${RATE:-$((TRANSACTIONS / (KILLS * 3) + 1))}
[ -x "$CDCSYNC" ] || { echo "soak: build first (cmake -S . -B build && cmake --build build), or set CDCSYNC" >&2; exit 2; }
export CDCSYNC SRCDIR
source tests/integration/lib.sh
source tests/integration/mylib.sh
TESTNAME=soak

pg_start src
pg_start dst
my_start my 1
MPORT=$(free_port)
PGBIN=/usr/lib/postgresql/15/bin
pgbench_on() { "$PGBIN/pgbench" -h "$PG_src_DIR" -p "$PG_src_PORT" -U postgres "$@" postgres; }
pgbench_on -i -s 1 -q >"$WORK/pgbench-init.log" 2>&1

cat >"$WORK/cdcsync.conf" <<CONF
[service]
state_dir = $WORK/state
metrics_listen = 127.0.0.1:$MPORT

[connector.src]
type = postgres
dsn = $(pg_dsn src)

[connector.pg]
type = postgres
dsn = $(pg_dsn dst)
create_tables = yes

[connector.my]
$(my_connector my 9301)
create_tables = yes

[pipeline.to_pg]
source = src
sink = pg
tables = public.pgbench_accounts, public.pgbench_branches, public.pgbench_tellers, public.pgbench_history

[pipeline.to_my]
source = src
sink = my
tables = public.pgbench_accounts, public.pgbench_branches, public.pgbench_tellers, public.pgbench_history
map = public.* -> test.*
CONF
chmod 600 "$WORK/cdcsync.conf"

up() { curl -s "http://127.0.0.1:$MPORT/metrics" | grep -q "^cdcsync_pipeline_up{pipeline=\"$1\"} 1"; }
src_history() { psql_on src -c "SELECT count(*) FROM pgbench_history"; }
pg_history() { psql_on dst -c "SELECT count(*) FROM pgbench_history" 2>/dev/null || echo 0; }
my_history() { my_on my -e "SELECT count(*) FROM pgbench_history" 2>/dev/null || echo 0; }

service_start
both_up() { up to_pg && up to_my; }
wait_for "both pipelines streaming (snapshot copied)" 300 both_up
log "snapshot copied; pgbench: $TRANSACTIONS transactions, $CLIENTS clients, at most $RATE/s"

per_client=$((TRANSACTIONS / CLIENTS))
t_start=$(date +%s)
rate_opt=()
[ "$RATE" -gt 0 ] && rate_opt=(-R "$RATE")
pgbench_on -n -c "$CLIENTS" -j "$CLIENTS" -t "$per_client" "${rate_opt[@]}" >"$WORK/pgbench.log" 2>&1 &
PGBENCH_PID=$!

# A kill each time the source committed another slice of the run (and the sinks made progress
# since the previous kill, so that every restart does some work before it is killed again).
kills=0
slice=$((per_client * CLIENTS / (KILLS + 2)))
for k in $(seq 1 "$KILLS"); do
  target=$((k * slice))
  before=$(( $(pg_history) + $(my_history) ))
  until [ "$(src_history)" -ge "$target" ] && [ $(( $(pg_history) + $(my_history) )) -gt "$before" ]; do
    kill -0 "$PGBENCH_PID" 2>/dev/null || break
    sleep 0.2
  done
  kill -0 "$PGBENCH_PID" 2>/dev/null || { log "pgbench ended before kill $k"; break; }
  service_kill9
  kills=$((kills + 1))
  log "kill -9 #$kills: source $(src_history) transactions, sinks $(pg_history) (pg) $(my_history) (mysql)"
  service_start
done
wait "$PGBENCH_PID" || fail "pgbench failed: $(tail -5 "$WORK/pgbench.log")"
t_bench=$(($(date +%s) - t_start))
[ "$kills" -eq "$KILLS" ] || fail "only $kills of $KILLS kills happened during the run"
done_txns=$(src_history)
log "pgbench done: $done_txns transactions in ${t_bench}s; $(grep -E '^tps' "$WORK/pgbench.log" | head -1)"

# Rows as comparable text, one a line, on each side (numbers plain, times with microseconds,
# char padding trimmed, NULL spelled out).
pg_rows() { # CLUSTER TABLE
  case $2 in
  pgbench_accounts) q="SELECT aid, bid, abalance, rtrim(coalesce(filler, 'null')) FROM pgbench_accounts" ;;
  pgbench_branches) q="SELECT bid, bbalance, rtrim(coalesce(filler, 'null')) FROM pgbench_branches" ;;
  pgbench_tellers) q="SELECT tid, bid, tbalance, rtrim(coalesce(filler, 'null')) FROM pgbench_tellers" ;;
  pgbench_history) q="SELECT tid, bid, aid, delta, to_char(mtime, 'YYYY-MM-DD HH24:MI:SS.US'), rtrim(coalesce(filler, 'null')) FROM pgbench_history" ;;
  esac
  psql_on "$1" -F "$(printf '\t')" -c "$q"
}
my_rows() { # TABLE
  case $1 in
  pgbench_accounts) q="SELECT aid, bid, abalance, rtrim(ifnull(filler, 'null')) FROM pgbench_accounts" ;;
  pgbench_branches) q="SELECT bid, bbalance, rtrim(ifnull(filler, 'null')) FROM pgbench_branches" ;;
  pgbench_tellers) q="SELECT tid, bid, tbalance, rtrim(ifnull(filler, 'null')) FROM pgbench_tellers" ;;
  pgbench_history) q="SELECT tid, bid, aid, delta, DATE_FORMAT(mtime, '%Y-%m-%d %H:%i:%s.%f'), rtrim(ifnull(filler, 'null')) FROM pgbench_history" ;;
  esac
  my_on my -e "$q"
}
# multiset_diff A B — "lost=N duplicated=M extra=K": rows of A missing from B, rows B holds more
# often than A (a row applied twice), rows of B that A never had.
multiset_diff() {
  python3 - "$1" "$2" <<'PY'
import collections, sys
a = collections.Counter(open(sys.argv[1]).read().splitlines())
b = collections.Counter(open(sys.argv[2]).read().splitlines())
lost = sum((a - b).values())
dup = sum(n for row, n in (b - a).items() if row in a)
extra = sum(n for row, n in (b - a).items() if row not in a)
print("lost=%d duplicated=%d extra=%d" % (lost, dup, extra))
PY
}
TABLES="pgbench_accounts pgbench_branches pgbench_tellers pgbench_history"
caught_up() {
  local t
  for t in $TABLES; do
    pg_rows src "$t" >"$WORK/src.$t"
    pg_rows dst "$t" >"$WORK/pg.$t"
    my_rows "$t" >"$WORK/my.$t"
    [ "$(multiset_diff "$WORK/src.$t" "$WORK/pg.$t")" = "lost=0 duplicated=0 extra=0" ] || return 1
    [ "$(multiset_diff "$WORK/src.$t" "$WORK/my.$t")" = "lost=0 duplicated=0 extra=0" ] || return 1
  done
}
t0=$(date +%s)
wait_for "both targets equal to the source" 900 caught_up
t_catchup=$(($(date +%s) - t0))
bad=0
for t in $TABLES; do
  pgd=$(multiset_diff "$WORK/src.$t" "$WORK/pg.$t")
  myd=$(multiset_diff "$WORK/src.$t" "$WORK/my.$t")
  echo "SOAK table=$t rows=$(wc -l <"$WORK/src.$t") postgres:$pgd mysql:$myd"
  [ "$pgd" = "lost=0 duplicated=0 extra=0" ] && [ "$myd" = "lost=0 duplicated=0 extra=0" ] || bad=1
done
echo "SOAK transactions=$done_txns kills=$kills pgbench_s=$t_bench catchup_after_s=$t_catchup clients=$CLIENTS rate=$RATE"
service_stop
[ "$bad" = 0 ] || fail "a target differs from the source"
finish
