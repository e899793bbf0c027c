#!/usr/bin/env bash
# Logging as journald and an operator see it: with JOURNAL_STREAM set every line starts with a
# syslog priority "<N>" matching its level (errors <3>, warnings <4>, info <6>) and carries no
# timestamp of its own; log_level = warn hides info lines, at start and after a reload to warn.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ops_lib.sh"

pg_start src
psql_on src -c "CREATE TABLE t (id int PRIMARY KEY, v text)"
MPORT=$(free_port)
DEAD=$(free_port) # nothing listens there: the sink cannot be reached, the pipeline retries (warnings)

conf() { # LOG_LEVEL [EXTRA]
  cat >"$WORK/cdcsync.conf" <<CONF
[service]
state_dir = $WORK/state
metrics_listen = 127.0.0.1:$MPORT
log_level = $1

[connector.src]
type = postgres
dsn = $(pg_dsn src)

[connector.dst]
type = postgres
dsn = host=127.0.0.1 port=$DEAD user=postgres dbname=postgres connect_timeout=2

[pipeline.main]
source = src
sink = dst
tables = public.t
${2:-}
CONF
  chmod 600 "$WORK/cdcsync.conf"
}

# 1. Under journald (JOURNAL_STREAM set), info level.
conf info
JOURNAL_STREAM=8:123456 "$CDCSYNC" -c "$WORK/cdcsync.conf" run >"$WORK/service_journal.log" 2>&1 &
SERVICE_PID=$!
wait_for "a retry warning" 30 grep -q "retrying in" "$WORK/service_journal.log"
conf info $'[pipeline.bad]\nsource = nowhere'
kill -HUP "$SERVICE_PID"
wait_for "the reload rejected" 20 grep -q "is not valid" "$WORK/service_journal.log"
service_stop
cat "$WORK/service_journal.log" >&2
grep -vq '^<[0-9]>' "$WORK/service_journal.log" && fail "a line without a <N> priority prefix under JOURNAL_STREAM"
grep -q '^<6>cdcsync .* started with 1 pipelines' "$WORK/service_journal.log" || fail "no <6> info line for the start"
grep -q '^<4>\[pipeline=main .*retrying in' "$WORK/service_journal.log" || fail "the retry warning is not <4>"
grep -q '^<3>.*cdcsync.conf:[0-9]*: ' "$WORK/service_journal.log" || fail "the conf error is not <3> with file:line"
grep -q '^<3>reload: .* is not valid' "$WORK/service_journal.log" || fail "the rejected reload is not <3>"
grep -q '^<6>stopped$' "$WORK/service_journal.log" || fail "no <6>stopped line"
grep -q "$(printf '\t')" "$WORK/service_journal.log" && fail "a tab inside a log line (libpq's multi-line errors must be folded)"
grep -Eq '^<[0-9]>[0-9]{4}-[0-9]{2}-[0-9]{2}T' "$WORK/service_journal.log" && fail "journald lines carry their own timestamp"

# 2. Without journald, log_level = warn: warnings, no info.
conf warn
service_start
wait_for "a retry warning" 30 grep -q "WARN .*retrying in" "$WORK/service.log"
service_stop
cat "$WORK/service.log" >&2
grep -q ' INFO ' "$WORK/service.log" && fail "log_level = warn shows info lines"
grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z WARN ' "$WORK/service.log" || fail "warnings are not timestamped WARN lines"

# 3. Info at start, then a reload to warn: no info line after the reload's own.
: >"$WORK/service.log"
conf info
service_start
wait_for "info lines" 30 grep -q "INFO .*started with" "$WORK/service.log"
conf warn
kill -HUP "$SERVICE_PID"
wait_for "the reload" 20 grep -q "reloading" "$WORK/service.log"
n=$(grep -c "retrying in" "$WORK/service.log")
wait_for "two more retry warnings after the reload" 30 sh -c "[ \$(grep -c 'retrying in' '$WORK/service.log') -ge $((n + 2)) ]"
service_stop
sed -n '/reloading/,$p' "$WORK/service.log" | tail -n +2 >"$WORK/after_reload.log"
cat "$WORK/after_reload.log" >&2
grep -q ' INFO ' "$WORK/after_reload.log" && fail "info lines after a reload to log_level = warn"
grep -q ' WARN ' "$WORK/after_reload.log" || fail "no warnings after the reload (the check would be vacuous)"
finish
