#!/usr/bin/env bash
# Secrets stay secret: a pipeline whose source logs in as cdc_pw with 's3cret-pw' from a
# password_file (and a metrics endpoint behind basic auth), exercised through run (debug log),
# check --connect, status, /metrics /status /healthz, a reload, a failed login with a wrong
# password (from password_file and from ${ENV_VAR}), and a DSN holding its own password: neither
# password appears in the service log or in any command's output.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ops_lib.sh"

GOOD='s3cret-pw'
WRONG='Wr0ng-Pw-4242'
METRICS_PW='m3trics-Pw-77'
pg_start src
pg_start dst
MPORT=$(free_port)
psql_on src -c "CREATE TABLE t (id int PRIMARY KEY, v text)"
OUT=$WORK/out
mkdir -p "$OUT"
printf '%s\n' "$GOOD" >"$WORK/src.pass"
printf '%s\n' "$WRONG" >"$WORK/wrong.pass"
printf '%s\n' "$METRICS_PW" >"$WORK/metrics.pass"
chmod 600 "$WORK"/*.pass

# conf FILE PASSWORD_LINE [SRC_DSN] — one pipeline from src (as cdc_pw) to dst.
conf() {
  cat >"$1" <<CONF
[service]
state_dir = $WORK/state
metrics_listen = 127.0.0.1:$MPORT
log_level = debug

[connector.src]
type = postgres
dsn = ${3:-host=127.0.0.1 port=$PG_src_PORT user=cdc_pw dbname=postgres}
$2

[connector.dst]
type = postgres
dsn = $(pg_dsn dst)
create_tables = yes

[pipeline.main]
source = src
sink = dst
tables = public.t
CONF
  chmod 600 "$1"
}
conf "$WORK/cdcsync.conf" "password_file = $WORK/src.pass"
conf "$WORK/wrong.conf" "password_file = $WORK/wrong.pass"
conf "$WORK/env.conf" 'password = ${CDC_TEST_PW}'
conf "$WORK/inline.conf" "" "host=127.0.0.1 port=1 user=cdc_pw password=$WRONG dbname=postgres connect_timeout=2"

run_cmd() { # NAME ARGS... — runs a command, its output kept under $OUT/NAME, exit code ignored
  local name=$1
  shift
  "$@" >"$OUT/$name.out" 2>&1 || true
}

run_cmd check_good "$CDCSYNC" -c "$WORK/cdcsync.conf" check --connect
grep -q "pipeline main: src → dst ok" "$OUT/check_good.out" || fail "check --connect with the right password: $(cat "$OUT/check_good.out")"
run_cmd check_wrong "$CDCSYNC" -c "$WORK/wrong.conf" check --connect
grep -q "password authentication failed" "$OUT/check_wrong.out" || fail "check --connect with a wrong password does not say so: $(cat "$OUT/check_wrong.out")"
CDC_TEST_PW=$WRONG run_cmd check_env "$CDCSYNC" -c "$WORK/env.conf" check --connect
grep -q "password authentication failed" "$OUT/check_env.out" || fail "\${ENV_VAR} password: $(cat "$OUT/check_env.out")"
run_cmd check_inline "$CDCSYNC" -c "$WORK/inline.conf" check --connect
grep -q "pipeline main: source src:" "$OUT/check_inline.out" || fail "a DSN with its own password and no server: $(cat "$OUT/check_inline.out")"

# The service with the wrong password: it retries and reports the failed login.
service_start "$WORK/wrong.conf"
wait_for "the failed login in the log" 30 grep -q "password authentication failed" "$WORK/service.log"
run_cmd healthz_wrong curl -s "http://127.0.0.1:$MPORT/healthz"
run_cmd status_wrong "$CDCSYNC" -c "$WORK/wrong.conf" status
grep -q "password authentication failed" "$OUT/status_wrong.out" || fail "status does not show the failed login"
service_stop

# The service with the right password, metrics behind basic auth, a reload, then a stop.
sed -i "s|^log_level = debug|log_level = debug\nmetrics_user = prom\nmetrics_password_file = $WORK/metrics.pass|" "$WORK/cdcsync.conf"
service_start
wait_for "streaming as cdc_pw" 60 sh -c "curl -s -u 'prom:$METRICS_PW' http://127.0.0.1:$MPORT/metrics | grep -q '^cdcsync_pipeline_up{pipeline=\"main\"} 1'"
psql_on src -c "INSERT INTO t VALUES (1, 'secret-free'), (2, 'row')"
wait_synced src dst 30 t
run_cmd metrics curl -s -u "prom:$METRICS_PW" "http://127.0.0.1:$MPORT/metrics"
run_cmd status_json curl -s -u "prom:$METRICS_PW" "http://127.0.0.1:$MPORT/status"
run_cmd healthz curl -s -u "prom:$METRICS_PW" "http://127.0.0.1:$MPORT/healthz"
run_cmd unauth curl -s -i "http://127.0.0.1:$MPORT/metrics"
grep -q "^HTTP/1.1 401" "$OUT/unauth.out" || fail "metrics without credentials are not refused"
run_cmd status_cli "$CDCSYNC" -c "$WORK/cdcsync.conf" status
kill -HUP "$SERVICE_PID"
wait_for "the reload" 20 grep -q "reloading" "$WORK/service.log"
run_cmd proc_cmdline tr '\0' ' ' <"/proc/$SERVICE_PID/cmdline"
service_stop
grep -q "stopped" "$WORK/service.log" || fail "the service did not log its stop"

# Nothing anywhere holds a password.
cp "$WORK/service.log" "$OUT/service.log"
log "checked $(ls "$OUT" | wc -l) outputs, $(cat "$OUT"/* | wc -l) lines"
for secret in "$GOOD" "$WRONG" "$METRICS_PW"; do
  if grep -rlF -- "$secret" "$OUT" >"$WORK/leaks"; then
    grep -rnF -- "$secret" "$OUT" | head -5 >&2
    fail "a password appears in: $(tr '\n' ' ' <"$WORK/leaks")"
  fi
done
# The check proves something: the log does hold the failures and the user's name.
grep -q "cdc_pw" "$OUT/service.log" || fail "the log does not name the user (the check would be vacuous)"
finish
