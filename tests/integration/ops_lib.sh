# Helpers shared by the operations tests (test_ops_*.sh): one PostgreSQL → PostgreSQL pipeline
# on a table `t`, and reads of the service's metrics endpoint. Sourced after lib.sh.

# ops_pair [EXTRA_SERVICE_LINES] — starts clusters src and dst, creates table t on the source,
# writes $WORK/cdcsync.conf with one pipeline `main` and metrics on a free loopback port (MPORT).
ops_pair() {
  pg_start src
  pg_start dst
  MPORT=$(free_port)
  psql_on src -c "CREATE TABLE t (id int PRIMARY KEY, v text, at timestamptz DEFAULT now())"
  cat >"$WORK/cdcsync.conf" <<CONF
[service]
state_dir = $WORK/state
metrics_listen = 127.0.0.1:$MPORT
log_level = ${OPS_LOG_LEVEL:-info}

[connector.src]
type = postgres
dsn = $(pg_dsn src)

[connector.dst]
type = postgres
dsn = $(pg_dsn dst)
create_tables = yes

[pipeline.main]
source = src
sink = dst
tables = public.t
CONF
  chmod 600 "$WORK/cdcsync.conf"
}

# scrape [PATH] — the body of GET PATH (default /metrics) from the service.
scrape() {
  curl -sS --max-time 5 "http://127.0.0.1:$MPORT${1:-/metrics}"
}

# metric NAME PIPELINE — the value of NAME{pipeline="PIPELINE"} in a fresh scrape (empty if absent).
metric() {
  scrape | awk -v n="$1{pipeline=\"$2\"}" '$1 == n { print $2 }'
}

# pipeline_streaming PIPELINE — true when cdcsync_pipeline_up is 1.
pipeline_streaming() {
  [ "$(metric cdcsync_pipeline_up "$1")" = 1 ]
}

# healthz_code — the HTTP status of GET /healthz.
healthz_code() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$MPORT/healthz"
}

# float_lt A B — A < B as numbers.
float_lt() {
  awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 < b + 0) }'
}

# metric_is NAME PIPELINE VALUE — true when the metric equals VALUE numerically.
metric_is() {
  local v
  v=$(metric "$1" "$2")
  [ -n "$v" ] && awk -v a="$v" -v b="$3" 'BEGIN { exit !(a + 0 == b + 0) }'
}
