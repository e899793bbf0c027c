# Helpers of the fault suite (tests/faults/test_*.sh), sourced after tests/integration/lib.sh and
# ops_lib.sh: TCP proxies that freeze or cut connections (faultproxy.py), a background write
# load, the service's health as an operator reads it, and timings printed as "RESULT" lines (the
# figures quoted in README "Reliability"). Detection and recovery are waited for with deadlines,
# never asserted on a clock: the suite prints how long each took.
PROXIES=()
LOADS=()

stop_faults() {
  local p
  for p in "${LOADS[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  LOADS=()
  for p in "${PROXIES[@]}"; do
    kill -CONT "$p" 2>/dev/null || true
    kill -TERM "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  PROXIES=()
}
# errexit is off in the trap: (exit $rc) only hands the test's status on to cleanup.
trap 'rc=$?; set +e; stop_faults; [ -n "${FAULTS_EXTRA_CLEANUP:-}" ] && eval "$FAULTS_EXTRA_CLEANUP"; (exit $rc); cleanup' EXIT

# proxy_start NAME TARGET_PORT — a proxy in front of TARGET_PORT; sets PROXY_<NAME>_PORT and
# PROXY_<NAME>_PID.
proxy_start() {
  local name=$1 target=$2 port
  port=$(free_port)
  python3 -u "$SRCDIR/tests/faults/faultproxy.py" "$port" "$target" >"$WORK/proxy_$name.out" 2>&1 &
  local pid=$!
  PROXIES+=("$pid")
  printf -v "PROXY_${name}_PORT" '%s' "$port"
  printf -v "PROXY_${name}_PID" '%s' "$pid"
  wait_for "proxy $name listening" 10 grep -q listening "$WORK/proxy_$name.out"
}

proxy_pid() {
  local v="PROXY_${1}_PID"
  printf '%s' "${!v}"
}
# A frozen path: nothing forwarded, sockets open, no FIN, no RST.
proxy_freeze() { kill -STOP "$(proxy_pid "$1")"; }
proxy_thaw() { kill -CONT "$(proxy_pid "$1")"; }
# Every open connection reset; new ones go through.
proxy_cut() { kill -USR1 "$(proxy_pid "$1")"; }

# A dsn through a proxy to a PostgreSQL cluster started by pg_start.
pg_proxy_dsn() {
  local port="PROXY_${1}_PORT"
  printf 'host=127.0.0.1 port=%s user=postgres dbname=postgres' "${!port}"
}

# Seconds since the epoch with a fraction, and the difference of two of them.
now_s() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }'; }
# elapsed_at_least START SECONDS — for wait_for: a fault that must last a while.
elapsed_at_least() { awk -v a="$1" -v b="$(now_s)" -v s="$2" 'BEGIN { exit !(b - a >= s) }'; }

# result FAULT key=value... — one line the README's table is made from.
result() {
  local fault=$1
  shift
  printf 'RESULT fault=%s %s\n' "$fault" "$*" | tee -a "$WORK/results" >&2
}

# pg_load NAME TABLE — inserts into TABLE (id bigserial PRIMARY KEY, v text) and its keyless
# twin TABLE_log (a duplicate there shows in a content comparison), and updates a recent row, on
# cluster NAME directly (not through a proxy), about 20 transactions a second, until stopped.
# A server that goes away is reconnected to; what it committed is what the sink must hold.
pg_load() {
  local name=$1 table=$2 dir="PG_${1}_DIR" port="PG_${1}_PORT"
  python3 - "${!dir}" "${!port}" "$table" <<'PY' >>"$WORK/load.log" 2>&1 &
import subprocess, sys, time
host, port, table = sys.argv[1:4]
sql = ("BEGIN; INSERT INTO {t} (v) VALUES (md5(random()::text)); "
       "INSERT INTO {t}_log (v) VALUES (clock_timestamp()::text); "
       "UPDATE {t} SET v = v || '+' WHERE id = (SELECT max(id) - 3 FROM {t}); COMMIT;\n").format(t=table)
p = None
while True:
    try:
        if p is None or p.poll() is not None:
            p = subprocess.Popen(["psql", "-X", "-q", "-h", host, "-p", port, "-U", "postgres", "-d", "postgres"],
                                 stdin=subprocess.PIPE, text=True)
        p.stdin.write(sql)
        p.stdin.flush()
    except (BrokenPipeError, OSError):
        p = None
        time.sleep(0.2)
    time.sleep(0.05)
PY
  LOADS+=("$!")
}

# my_load NAME TABLE — the same load on a MariaDB server of my_start (database test, over its
# socket): TABLE (id bigint AUTO_INCREMENT PRIMARY KEY, v varchar(64)) and TABLE_log (v varchar(64)).
my_load() {
  local name=$1 table=$2 dir="MY_${1}_DIR"
  python3 - "${!dir}/mysql.sock" "$table" <<'PY' >>"$WORK/load.log" 2>&1 &
import subprocess, sys, time
sock, table = sys.argv[1:3]
sql = ("START TRANSACTION; INSERT INTO {t} (v) VALUES (md5(rand())); "
       "INSERT INTO {t}_log (v) VALUES (concat(now(6), ' ', rand())); "
       "UPDATE {t} SET v = concat(left(v, 40), '+') WHERE id = (SELECT m FROM (SELECT max(id) - 3 AS m FROM {t}) x); COMMIT;\n").format(t=table)
p = None
while True:
    try:
        if p is None or p.poll() is not None:
            p = subprocess.Popen(["mariadb", "--socket=" + sock, "-uroot", "--database=test", "--force"],
                                 stdin=subprocess.PIPE, text=True)
        p.stdin.write(sql)
        p.stdin.flush()
    except (BrokenPipeError, OSError):
        p = None
        time.sleep(0.2)
    time.sleep(0.05)
PY
  LOADS+=("$!")
}

my_load_tables() {
  my_on "$1" -e "CREATE TABLE $2 (id bigint AUTO_INCREMENT PRIMARY KEY, v varchar(64));
    CREATE TABLE $2_log (v varchar(64))"
}

# my_kill_server NAME / my_start_again NAME — kill -9 of mariadbd (a crash) and a start.
my_kill_server() {
  local dir="MY_${1}_DIR" pid
  pid=$(cat "${!dir}/mysqld.pid")
  kill -9 "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}
my_start_again() {
  local dir="MY_${1}_DIR" port="MY_${1}_PORT"
  MYSQL_SERVER_ID=${2:-1} bash "$SRCDIR/scripts/mysql.sh" start "${!dir}" "${!port}" >/dev/null
}

stop_loads() {
  local p
  for p in "${LOADS[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  LOADS=()
}

# pg_load_tables NAME TABLE — creates TABLE and TABLE_log for pg_load.
pg_load_tables() {
  psql_on "$1" -c "CREATE TABLE $2 (id bigserial PRIMARY KEY, v text); CREATE TABLE $2_log (v text)"
}

# pg_kill_server NAME / pg_start_again NAME — an immediate stop (no shutdown checkpoint, clients
# cut: a crash) and a start of a cluster of pg_start.
pg_kill_server() {
  local dir="PG_${1}_DIR"
  runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "${!dir}/data" -m immediate -w stop >/dev/null 2>&1 ||
    /usr/lib/postgresql/15/bin/pg_ctl -D "${!dir}/data" -m immediate -w stop >/dev/null
}
pg_start_again() {
  local dir="PG_${1}_DIR" port="PG_${1}_PORT"
  bash "$SRCDIR/scripts/pg.sh" start "${!dir}" "${!port}"
}

# Health as an operator reads it.
healthz_503() { [ "$(healthz_code)" = 503 ]; }
pipeline_down() { [ "$(metric cdcsync_pipeline_up "$1")" = 0 ]; }
lag_above() { float_lt "$2" "$(metric cdcsync_pipeline_lag_seconds "$1")"; }
lag_bytes_above() { [ "$(metric cdcsync_pipeline_lag_bytes "$1")" -gt "$2" ] 2>/dev/null; }
errors_of() {
  scrape | awk -v k="cdcsync_errors_total{pipeline=\"$1\",kind=\"$2\"}" '$1 == k { print $2 }'
}
# The last error /status shows for a pipeline.
last_error() {
  scrape /status | python3 -c '
import json, sys
name = sys.argv[1]
for p in json.load(sys.stdin)["pipelines"]:
    if p["name"] == name:
        print((p.get("last_error") or {}).get("message", ""))' "$1"
}

# detect PIPELINE FAULT START — waits (deadline 60 s: the default bound asked of a frozen path,
# whatever the test's timeout_s) until /healthz answers 503 and cdcsync_pipeline_up is 0; prints
# the time since START.
detect() {
  local pipe=$1 fault=$2 start=$3
  wait_for "$fault: /healthz 503" 60 healthz_503
  wait_for "$fault: cdcsync_pipeline_up 0" 60 pipeline_down "$pipe"
  DETECT_S=$(since "$start")
  log "$fault: detected after ${DETECT_S}s: $(scrape /healthz | head -c 400)"
}

# recover PIPELINE FAULT START — waits until the pipeline streams again; prints the time since START.
recover() {
  local pipe=$1 fault=$2 start=$3
  wait_for "$fault: pipeline $pipe streaming again" 120 pipeline_streaming "$pipe"
  RECOVER_S=$(since "$start")
}
