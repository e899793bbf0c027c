#!/usr/bin/env bash
# The alert rules and the Grafana dashboard: `promtool check rules` and `promtool test rules`
# (conf/prometheus/cdcsync-rules.test.yml) pass, and every cdcsync_* name that the rules and the
# dashboard use is one a running cdcsync exports, or is listed as expected later (the check and
# the list: metric_names.py). The service runs here with one pipeline whose servers do not exist,
# which is enough for /metrics to carry every family. (test_ops_prometheus.sh runs the rules and
# the dashboard's queries in a real Prometheus against a streaming pipeline.)
source "$(dirname "$0")/../integration/lib.sh"

RULES=$SRCDIR/conf/prometheus/cdcsync-rules.yml
DASH=$SRCDIR/conf/grafana/cdcsync-dashboard.json

promtool check rules "$RULES" >"$WORK/check.out" 2>&1 || { cat "$WORK/check.out" >&2; fail "promtool check rules"; }
(cd "$(dirname "$RULES")" && promtool test rules cdcsync-rules.test.yml) >"$WORK/test.out" 2>&1 || {
  cat "$WORK/test.out" >&2
  fail "promtool test rules"
}
log "promtool check rules, test rules: ok"
for alert in CdcsyncServiceDown CdcsyncPipelineDown CdcsyncLagHigh CdcsyncErrorsRising CdcsyncConflictsRising \
  CdcsyncSourceRetainedHigh; do
  grep -q "alertname: $alert\$" "$SRCDIR/conf/prometheus/cdcsync-rules.test.yml" || fail "no promtool test case for $alert"
done

# A running service's /metrics: a pipeline between two PostgreSQL servers that are not there.
MPORT=$(free_port)
DEAD=$(free_port)
cat >"$WORK/cdcsync.conf" <<CONF
[service]
state_dir = $WORK/state
metrics_listen = 127.0.0.1:$MPORT

[connector.src]
type = postgres
dsn = host=127.0.0.1 port=$DEAD user=nobody dbname=none connect_timeout=1

[connector.dst]
type = postgres
dsn = host=127.0.0.1 port=$DEAD user=nobody dbname=none_sink connect_timeout=1

[pipeline.main]
source = src
sink = dst
tables = public.t
CONF
service_start
scraped() { curl -sS --max-time 5 "http://127.0.0.1:$MPORT/metrics" >"$WORK/scrape.txt" && grep -q '^cdcsync_pipeline_up{pipeline="main"}' "$WORK/scrape.txt"; }
wait_for "/metrics with pipeline main" 30 scraped
service_stop

python3 "$SRCDIR/tests/ops/metric_names.py" --require cdcsync_pipeline_up,cdcsync_pipeline_lag_seconds,cdcsync_errors_total,cdcsync_conflicts_total,cdcsync_source_retained_bytes \
  "$WORK/scrape.txt" "$RULES" >"$WORK/names1.out" 2>&1 || { cat "$WORK/names1.out" >&2; fail "the rules name metrics cdcsync does not export"; }
python3 "$SRCDIR/tests/ops/metric_names.py" --require cdcsync_pipeline_lag_seconds,cdcsync_events_total,cdcsync_errors_total,cdcsync_conflicts_total,cdcsync_source_retained_bytes \
  "$WORK/scrape.txt" "$DASH" >"$WORK/names2.out" 2>&1 || { cat "$WORK/names2.out" >&2; fail "the dashboard names metrics cdcsync does not export"; }
cat "$WORK/names1.out" "$WORK/names2.out" | while read -r line; do log "$line"; done
finish
