# Shared helpers for the benches: the integration tests' servers and checks (tests/integration/
# lib.sh, mylib.sh), plus what only a bench needs — CPU and memory of a process tree, a marker wait,
# key=value output. Sourced by bench/*.sh.
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRCDIR=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=../tests/integration/lib.sh
source "$SRCDIR/tests/integration/lib.sh"
# shellcheck source=../tests/integration/mylib.sh
source "$SRCDIR/tests/integration/mylib.sh"
[ -x "$CDCSYNC" ] || fail "no cdcsync binary at $CDCSYNC (build first, or set CDCSYNC)"

now() { date +%s.%N; }
calc() { echo "$*" | bc -l; }
fmt0() { printf '%.0f' "$1"; }
fmt2() { printf '%.2f' "$1"; }

# CPU seconds (user + system) used so far by a process and every descendant, living or reaped:
# the process's own ticks, its reaped children's (cutime/cstime) and every living descendant's.
cpu_tree() {
  local pid=$1 ticks=0 p f
  for p in $pid $(pgrep -d ' ' -P "$pid" 2>/dev/null) $(for c in $(pgrep -P "$pid" 2>/dev/null); do pgrep -d ' ' -P "$c"; done); do
    f=$(cut -d' ' -f14-17 "/proc/$p/stat" 2>/dev/null) || continue
    # shellcheck disable=SC2086
    set -- $f
    if [ "$p" = "$pid" ]; then ticks=$((ticks + $1 + $2 + $3 + $4)); else ticks=$((ticks + $1 + $2)); fi
  done
  calc "$ticks / $(getconf CLK_TCK)"
}

# Peak resident set of a living process, in KiB.
peak_rss_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

pg_postmaster_pid() { head -1 "$1/data/postmaster.pid"; }
my_server_pid() { cat "$1/mysqld.pid"; }

# pg_digest NAME DATABASE TABLE... — "TABLE=count:md5 ..." of the tables of DATABASE on cluster NAME,
# each ordered by its whole row (lib.sh's table_digest, in any database, in one query): a target
# equals its source when their digests are equal.
pg_digest() {
  local name=$1 db=$2 t q=""
  shift 2
  for t in "$@"; do
    q+="${q:+ || ' ' || }'$t=' || (SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, E'\n' ORDER BY t::text COLLATE \"C\")), '') FROM $t t)"
  done
  psql_on "$name" -d "$db" -c "SELECT $q"
}

# wait_query WHAT LIMIT_S QUERY CLIENT... — asks QUERY every 50 ms, on one session of CLIENT
# (psql_on NAME or my_on NAME [--database=DB]), until it answers t or 1; prints the seconds it
# took. A bench waits for an event, never a fixed time, and what waits must not take the CPU of
# what is timed: a client process started per check (with its server backend, `date` and `bc`)
# took a fifth of this 2-core machine while it timed an initial load (perf -a), so the session
# stays open and the loop forks nothing. Errors (a table not made yet) count as "not yet".
wait_query() {
  local what=$1 limit=$2 query=$3 end=--wait-query-end-- line ok='' t0=$EPOCHREALTIME mark sleepfd
  shift 3
  case $1 in
  psql_on) mark="\\echo $end" ;;
  my_on) mark="SELECT '$end';" ;;
  *) fail "wait_query: CLIENT is psql_on or my_on, not $1" ;;
  esac
  if [ "$1" = psql_on ]; then set -- "$@" -v ON_ERROR_STOP=0; else set -- "$@" --unbuffered --force; fi
  coproc WAITQ { "$@" 2>/dev/null; }
  [ -e "$WORK/.wait_query.fifo" ] || mkfifo "$WORK/.wait_query.fifo"
  exec {sleepfd}<>"$WORK/.wait_query.fifo" # read -t on it: a 50 ms sleep without a process
  while :; do
    [ -n "${WAITQ[1]:-}" ] || fail "the client of the wait for $what exited"
    printf '%s;\n%s\n' "$query" "$mark" 1>&"${WAITQ[1]}"
    while :; do
      IFS= read -r -t 30 line <&"${WAITQ[0]}" || fail "the client of the wait for $what stopped answering"
      case $line in "$end") break ;; t | 1) ok=1 ;; esac
    done
    [ -z "$ok" ] || break
    [ -z "$SERVICE_PID" ] || kill -0 "$SERVICE_PID" 2>/dev/null || fail "cdcsync exited while waiting for $what"
    [ $((${EPOCHREALTIME%.*} - ${t0%.*})) -le "$limit" ] || fail "timed out after ${limit}s waiting for $what"
    read -r -t 0.05 -u "$sleepfd" line || true
  done
  local t1=$EPOCHREALTIME wfd=${WAITQ[1]}
  exec {sleepfd}>&- {wfd}>&-
  wait "$WAITQ_PID" 2>/dev/null || true
  calc "$t1 - $t0"
}

# wait_topic WHAT LIMIT_S TOPIC TEST — follows TOPIC from its start with one kcat consumer (of
# $BOOT) and calls TEST with each message's value until TEST succeeds. Driven by the messages
# themselves: no process is started per check (a kcat and a python3 per check, five a second, took
# CPU from the run being timed). A consumer that exits (the topic not made yet) is started again.
wait_topic() {
  local what=$1 limit=$2 topic=$3 test=$4 line rc rfd pid t0=$EPOCHREALTIME
  while :; do
    coproc WAITK { exec kcat -b "$BOOT" -C -t "$topic" -o beginning -u -q -f '%s\n' 2>/dev/null; }
    rfd=${WAITK[0]} pid=$WAITK_PID
    while :; do
      rc=0
      IFS= read -r -t 1 line <&"$rfd" || rc=$?
      if [ $rc -eq 0 ] && "$test" "$line"; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        return 0
      fi
      [ -z "$SERVICE_PID" ] || kill -0 "$SERVICE_PID" 2>/dev/null || fail "cdcsync exited while waiting for $what"
      [ $((${EPOCHREALTIME%.*} - ${t0%.*})) -le "$limit" ] || fail "timed out after ${limit}s waiting for $what"
      [ $rc -eq 0 ] || [ $rc -gt 128 ] || break # the consumer ended
    done
    wait "$pid" 2>/dev/null || true
    sleep 0.2
  done
}

# wait_marker KIND NAME [WHERE] — waits until the backlog's last transaction (a marker row in
# bench_done) is on target NAME (KIND pg: in schema WHERE, default public; my: in database WHERE,
# default test): commit order means everything before it is there too. Prints the seconds it took.
wait_marker() {
  case $1 in
  pg) wait_query "the marker on $2" "$LIMIT" "SELECT count(*) FROM ${3:-public}.bench_done" psql_on "$2" ;;
  my) wait_query "the marker on $2" "$LIMIT" "SELECT COUNT(*) FROM bench_done" my_on "$2" --database="${3:-test}" ;;
  esac
}

# wait_sql_true WHAT LIMIT_S COMMAND... — polls COMMAND (which prints t or f, 1 or 0) every 50 ms
# until it prints t/1, a process per check: for waits that are not timed (wait_query is for those).
wait_sql_true() {
  local what=$1 limit=$2 t0 out
  shift 2
  t0=$(now)
  while :; do
    out=$("$@" 2>/dev/null || true)
    case "$out" in t | 1) break ;; esac
    [ -z "$SERVICE_PID" ] || kill -0 "$SERVICE_PID" 2>/dev/null || fail "cdcsync exited while waiting for $what"
    [ "$(calc "$(now) - $t0 > $limit")" = 0 ] || fail "timed out after ${limit}s waiting for $what"
    sleep 0.05
  done
  calc "$(now) - $t0"
}

# my_quiesce NAME... — each MariaDB server writes its dirty pages out, waited for (at most 120 s),
# so that a timed run does not pay for the flushing of what ran before it (sysbench prepare, an
# earlier copy): every run of a bench starts from the same state.
my_quiesce() {
  local n
  for n in "$@"; do my_on "$n" -e "SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0, GLOBAL innodb_max_dirty_pages_pct = 0"; done
  dirty() { local n s=0; for n in "$@"; do s=$((s + $(my_on "$n" -e "SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'" | awk '{print $2}'))); done; [ "$s" -lt 16 ] && echo 1 || echo 0; }
  wait_sql_true "dirty pages written out" 120 dirty "$@" >/dev/null
  for n in "$@"; do my_on "$n" -e "SET GLOBAL innodb_max_dirty_pages_pct = 90"; done
}

# The machine's load, printed with every result so a reader can judge the noise.
machine_note() { printf 'cores=%s load_1m=%s' "$(nproc)" "$(cut -d' ' -f1 /proc/loadavg)"; }
