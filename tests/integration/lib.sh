# Shared helpers for the integration tests: throwaway servers on loopback, the service, checks.
# Sourced by tests/integration/test_*.sh. Needs CDCSYNC (the binary) and SRCDIR; the CMake test
# registration sets both.
set -euo pipefail

SRCDIR=${SRCDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
CDCSYNC=${CDCSYNC:-$SRCDIR/build/cdcsync}
TESTNAME=$(basename "$0" .sh)
WORK=$(mktemp -d "/tmp/cdcsync-$TESTNAME.XXXXXX")
chmod 755 "$WORK"
SERVERS=()
SERVICE_PID=""
FAILED=0

log() { printf '[%s %s] %s\n' "$TESTNAME" "$(date +%H:%M:%S)" "$*" >&2; }

fail() {
  log "FAIL: $*"
  FAILED=1
  if [ -n "${HOLD_ON_FAIL:-}" ]; then # debugging: keep servers and service up for a look
    log "holding for ${HOLD_ON_FAIL}s: WORK=$WORK service pid ${SERVICE_PID:-none}"
    sleep "$HOLD_ON_FAIL"
  fi
  exit 1
}

cleanup() {
  local rc=$?
  [ -n "$SERVICE_PID" ] && kill -9 "$SERVICE_PID" 2>/dev/null || true
  for s in "${SERVERS[@]}"; do
    case "$s" in
      pg:*) bash "$SRCDIR/scripts/pg.sh" stop "${s#pg:}" || true ;;
      my:*) bash "$SRCDIR/scripts/mysql.sh" stop "${s#my:}" || true ;;
    esac
  done
  if [ $rc -ne 0 ] || [ $FAILED -ne 0 ]; then
    log "service log (last 60 lines):"
    tail -n 60 "$WORK"/service*.log >&2 2>/dev/null || true
  fi
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

# A free TCP port on loopback.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# pg_start NAME → sets PG_<NAME>_DIR and PG_<NAME>_PORT, starts the cluster.
pg_start() {
  local name=$1 port
  port=$(free_port)
  bash "$SRCDIR/scripts/pg.sh" start "$WORK/pg_$name" "$port"
  SERVERS+=("pg:$WORK/pg_$name")
  printf -v "PG_${name}_DIR" '%s' "$WORK/pg_$name"
  printf -v "PG_${name}_PORT" '%s' "$port"
}

# psql_on NAME [psql args...] — as superuser, database postgres, unaligned tuples only.
# psql_on NAME[/DATABASE] [psql args...] — a client of cluster NAME (database postgres by default).
psql_on() {
  local name=${1%%/*} db=postgres
  [[ $1 == */* ]] && db=${1#*/}
  shift
  local dir="PG_${name}_DIR" port="PG_${name}_PORT"
  psql -X -h "${!dir}" -p "${!port}" -U postgres -d "$db" -qAt -v ON_ERROR_STOP=1 "$@"
}

pg_dsn() {
  local port="PG_${1}_PORT"
  printf 'host=127.0.0.1 port=%s user=postgres dbname=postgres' "${!port}"
}

# write_conf FILE METRICS_LISTEN [LOG_LEVEL] — writes a conf to FILE, mode 600: the [service]
# section (state in $WORK/state, metrics_listen, log_level if given), a blank line, then stdin (the
# connectors and pipelines).
write_conf() {
  local file=$1 metrics=$2 level=${3:-}
  {
    printf '[service]\nstate_dir = %s\nmetrics_listen = %s\n' "$WORK/state" "$metrics"
    [ -z "$level" ] || printf 'log_level = %s\n' "$level"
    printf '\n'
    cat
  } >"$file"
  chmod 600 "$file"
}

# Starts the service on $WORK/cdcsync.conf (or $1) in the background; its log goes to
# $WORK/service.log (appended, so restarts keep the history).
service_start() {
  local conf=${1:-$WORK/cdcsync.conf}
  "$CDCSYNC" -c "$conf" run >>"$WORK/service.log" 2>&1 &
  SERVICE_PID=$!
}

service_stop() {
  [ -n "$SERVICE_PID" ] || return 0
  kill -TERM "$SERVICE_PID" 2>/dev/null || true
  local i
  for i in $(seq 1 300); do
    kill -0 "$SERVICE_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$SERVICE_PID" 2>/dev/null; then
    kill -9 "$SERVICE_PID"
    fail "the service did not stop within 30 s of SIGTERM"
  fi
  wait "$SERVICE_PID" 2>/dev/null || true
  SERVICE_PID=""
}

service_kill9() {
  [ -n "$SERVICE_PID" ] || return 0
  kill -9 "$SERVICE_PID" 2>/dev/null || true
  wait "$SERVICE_PID" 2>/dev/null || true
  SERVICE_PID=""
}

# wait_for DESCRIPTION SECONDS COMMAND... — polls COMMAND every 0.2 s until it succeeds.
# yields WANT CMD... — true when CMD prints WANT; for wait_for, which runs it again each time
# (wait_for ... test "$(CMD)" = WANT would compare one early output forever).
yields() {
  local want=$1
  shift
  [ "$("$@")" = "$want" ]
}

wait_for() {
  local what=$1 secs=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >"$WORK/wait.out" 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      log "last attempt printed: $(head -c 2000 "$WORK/wait.out")"
      fail "timed out after ${secs}s waiting for: $what"
    fi
    if [ -n "$SERVICE_PID" ] && ! kill -0 "$SERVICE_PID" 2>/dev/null; then
      fail "the service exited while waiting for: $what"
    fi
    sleep 0.2
  done
}

# The ordered contents of a table on a cluster: one line per row, ordered by every column.
table_dump() {
  local name=$1 table=$2
  psql_on "$name" -c "COPY (SELECT * FROM $table t ORDER BY t::text COLLATE \"C\") TO STDOUT"
}

# A digest of the ordered contents (big tables are compared by digest, then dumped on mismatch).
table_digest() {
  local name=$1 table=$2
  psql_on "$name" -c "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, E'\n' ORDER BY t::text COLLATE \"C\")), '') FROM $table t"
}

tables_equal() {
  local a=$1 b=$2 table=$3 da db
  da=$(table_digest "$a" "$table")
  db=$(table_digest "$b" "$table")
  [ "$da" = "$db" ] || { echo "$table: $a has $da, $b has $db"; return 1; }
}

# assert_tables_equal A B TABLE... — fails with a diff of the first differing rows.
assert_tables_equal() {
  local a=$1 b=$2
  shift 2
  local t
  for t in "$@"; do
    if ! tables_equal "$a" "$b" "$t"; then
      table_dump "$a" "$t" >"$WORK/a.dump" || true
      table_dump "$b" "$t" >"$WORK/b.dump" || true
      log "table $t differs between $a and $b ($(wc -l <"$WORK/a.dump") vs $(wc -l <"$WORK/b.dump") rows):"
      diff "$WORK/a.dump" "$WORK/b.dump" | head -20 >&2 || true
      fail "table $t differs"
    fi
    log "table $t equal on $a and $b ($(table_digest "$a" "$t" | cut -d: -f1) rows)"
  done
}

# wait_synced A B SECONDS TABLE... — until every table has equal ordered contents.
wait_synced() {
  local a=$1 b=$2 secs=$3
  shift 3
  local t
  for t in "$@"; do
    wait_for "$t equal on $a and $b" "$secs" tables_equal "$a" "$b" "$t"
  done
}

assert_grep() {
  local pattern=$1 file=$2
  grep -qF -- "$pattern" "$file" || { log "expected in $file: $pattern"; cat "$file" >&2; fail "missing message"; }
}

finish() {
  log "PASS"
}
