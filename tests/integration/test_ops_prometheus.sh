#!/usr/bin/env bash
# The metrics endpoint as Prometheus sees it: a real scrape passes `promtool check metrics`, and a
# real Prometheus server scraping the service every second answers cdcsync_pipeline_lag_seconds
# for the pipeline through its query API.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ops_lib.sh"

PROM_PID=""
stop_prometheus() {
  [ -n "$PROM_PID" ] || return 0
  kill -TERM "$PROM_PID" 2>/dev/null || true
  wait "$PROM_PID" 2>/dev/null || true
  PROM_PID=""
}
# errexit is off in the trap: (exit $rc) only hands the test's status on to cleanup.
trap 'rc=$?; set +e; stop_prometheus; (exit $rc); cleanup' EXIT

ops_pair
psql_on src -c "INSERT INTO t (id, v) SELECT g, 'v' || g FROM generate_series(1, 100) g"
service_start
wait_for "pipeline main streaming" 60 pipeline_streaming main
psql_on src -c "UPDATE t SET v = 'changed' WHERE id <= 10; DELETE FROM t WHERE id > 90"
wait_synced src dst 30 t

# promtool lints the exposition format: names, HELP/TYPE, histogram buckets, label escaping.
scrape >"$WORK/scrape.txt"
promtool check metrics <"$WORK/scrape.txt" >"$WORK/promtool.out" 2>&1 || {
  cat "$WORK/promtool.out" >&2
  fail "promtool check metrics rejects the scrape"
}
log "promtool check metrics: ok"
for fam in cdcsync_pipeline_up cdcsync_pipeline_lag_seconds cdcsync_pipeline_lag_bytes cdcsync_events_total \
  cdcsync_transactions_total cdcsync_conflicts_total cdcsync_errors_total cdcsync_sink_batch_seconds_bucket \
  cdcsync_queue_depth cdcsync_build_info; do
  grep -q "^$fam{" "$WORK/scrape.txt" || fail "family $fam missing from the scrape"
done
grep -q '^cdcsync_events_total{pipeline="main",op="update"} [1-9]' "$WORK/scrape.txt" || fail "updates not counted"
grep -q '^cdcsync_events_total{pipeline="main",op="delete"} [1-9]' "$WORK/scrape.txt" || fail "deletes not counted"

# A real Prometheus server scraping the service.
PPORT=$(free_port)
mkdir -p "$WORK/prom"
cat >"$WORK/prom/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: cdcsync
    static_configs:
      - targets: ['127.0.0.1:$MPORT']
YML
promtool check config "$WORK/prom/prometheus.yml" >/dev/null || fail "the test's prometheus config is invalid"
/usr/bin/prometheus --config.file="$WORK/prom/prometheus.yml" --storage.tsdb.path="$WORK/prom/data" \
  --web.listen-address="127.0.0.1:$PPORT" >"$WORK/prom/prometheus.log" 2>&1 &
PROM_PID=$!

prom_has_lag() {
  kill -0 "$PROM_PID" 2>/dev/null || return 1
  curl -sS --max-time 5 "http://127.0.0.1:$PPORT/api/v1/query?query=cdcsync_pipeline_lag_seconds" >"$WORK/prom/answer.json" || return 1
  python3 - "$WORK/prom/answer.json" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
assert a["status"] == "success", a
res = [r for r in a["data"]["result"] if r["metric"].get("pipeline") == "main"]
assert res, a
assert res[0]["metric"]["job"] == "cdcsync"
v = float(res[0]["value"][1])
assert 0 <= v < 60, v
PY
}
wait_for "prometheus answers cdcsync_pipeline_lag_seconds{pipeline=main}" 60 prom_has_lag
log "prometheus: $(cat "$WORK/prom/answer.json")"
# The scrape target is healthy in Prometheus' own eyes (no scrape errors).
curl -sS "http://127.0.0.1:$PPORT/api/v1/targets" | python3 -c '
import json, sys
t = json.load(sys.stdin)["data"]["activeTargets"]
assert len(t) == 1 and t[0]["health"] == "up", t' || fail "prometheus reports the target unhealthy"
stop_prometheus

service_stop
finish
