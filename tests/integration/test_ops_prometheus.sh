#!/usr/bin/env bash
# The metrics endpoint as Prometheus sees it: a real scrape passes `promtool check metrics`, and a
# real Prometheus server scraping the service every second answers cdcsync_pipeline_lag_seconds
# for the pipeline through its query API. The same server loads conf/prometheus/cdcsync-rules.yml
# (every rule evaluates without error; stopping the service makes CdcsyncServiceDown pending) and
# answers every query of conf/grafana/cdcsync-dashboard.json with the pipeline's series.
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
rule_files:
  - $SRCDIR/conf/prometheus/cdcsync-rules.yml
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

# The alert rules: all loaded and evaluated without error; none pending or firing while the
# pipeline streams.
rules_ok() {
  curl -sS --max-time 5 "http://127.0.0.1:$PPORT/api/v1/rules" >"$WORK/prom/rules.json" || return 1
  curl -sS --max-time 5 "http://127.0.0.1:$PPORT/api/v1/alerts" >"$WORK/prom/alerts.json" || return 1
  python3 - "$WORK/prom/rules.json" "$WORK/prom/alerts.json" <<'PY'
import json, sys
groups = json.load(open(sys.argv[1]))["data"]["groups"]
rules = [r for g in groups if g["name"] == "cdcsync" for r in g["rules"]]
assert len(rules) == 6, [r["name"] for r in rules]
for r in rules:
    assert r["health"] == "ok" and not r.get("lastError"), r
    assert not r["lastEvaluation"].startswith("0001"), r  # evaluated at least once
alerts = json.load(open(sys.argv[2]))["data"]["alerts"]
assert alerts == [], alerts
PY
}
wait_for "the rules of cdcsync-rules.yml evaluated, no alert" 30 rules_ok

# Every query of the dashboard, with its variables set to "all" and $__rate_interval to 1m (4
# scrape intervals or more, as Grafana chooses it), answers the pipeline's series; a query on a
# metric that is not exported yet (metric_names.py's EXPECTED) answers nothing, without error.
dashboard_answers() {
  python3 - "$SRCDIR/conf/grafana/cdcsync-dashboard.json" "http://127.0.0.1:$PPORT" "127.0.0.1:$MPORT" <<'PY'
import json, sys, urllib.parse, urllib.request
sys.path.insert(0, sys.argv[1].rsplit("/conf/", 1)[0] + "/tests/ops")
from metric_names import EXPECTED
dash, base, instance = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
def get(path, **q):
    with urllib.request.urlopen(base + path + "?" + urllib.parse.urlencode(q, doseq=True), timeout=5) as r:
        a = json.load(r)
    assert a["status"] == "success", a
    return a["data"]
# the variables: label_values(SELECTOR, LABEL) is Grafana's form of /api/v1/label/LABEL/values
for v in dash["templating"]["list"]:
    if v["type"] != "query":
        continue
    sel, label = v["query"]["query"][len("label_values("):-1].rsplit(", ", 1)
    values = get(f"/api/v1/label/{label}/values", **{"match[]": sel.replace("$instance", ".*")})
    want = {"instance": instance, "pipeline": "main"}[v["name"]]
    assert values == [want], (v["name"], values)
n = 0
for p in dash["panels"]:
    for t in p["targets"]:
        q = t["expr"].replace("$instance", ".*").replace("$pipeline", ".*").replace("$__rate_interval", "1m")
        res = get("/api/v1/query", query=q)["result"]
        later = any(name in q for name in EXPECTED)
        assert (res == []) if later else (res != []), (p["title"], q, res)
        assert later or all(r["metric"].get("pipeline") == "main" for r in res), (p["title"], res)
        n += 1
print(n, "queries answered")
PY
}
wait_for "every dashboard query answers" 60 dashboard_answers
log "dashboard: $(cat "$WORK/wait.out")"

# The service stops: Prometheus sees its target down and CdcsyncServiceDown goes pending (it
# fires after 2 minutes, which promtool's unit test covers).
service_stop
service_down_pending() {
  curl -sS --max-time 5 "http://127.0.0.1:$PPORT/api/v1/alerts" | python3 -c '
import json, sys
a = [x for x in json.load(sys.stdin)["data"]["alerts"] if x["labels"]["alertname"] == "CdcsyncServiceDown"]
assert len(a) == 1 and a[0]["state"] == "pending" and a[0]["labels"]["job"] == "cdcsync", a
print(a[0]["labels"]["instance"])'
}
wait_for "CdcsyncServiceDown pending once the service is stopped" 60 service_down_pending
grep -qx "127.0.0.1:$MPORT" "$WORK/wait.out" || fail "CdcsyncServiceDown names $(cat "$WORK/wait.out"), not 127.0.0.1:$MPORT"
log "rules: CdcsyncServiceDown pending for $(cat "$WORK/wait.out")"
stop_prometheus
finish
