# Helpers of the bidirectional tests, sourced after lib.sh. MPORT: the service's metrics port.

metric_sum() { # metric_sum NAME PIPELINE: the sum of a counter over its labels
  curl -sf "http://127.0.0.1:$MPORT/metrics" |
    awk -v m="$1" -v p="pipeline=\"$2\"" 'index($0, m "{") == 1 && index($0, p) { s += $2 } END { print s + 0 }'
}
streaming() { curl -sf "http://127.0.0.1:$MPORT/healthz" >/dev/null; }

# assert_quiet P Q: once the writes stopped, the event counters of both pipelines stand still
# (nothing is sent back and forth: no loop).
assert_quiet() {
  local c1 c2
  sleep 3
  c1=$(metric_sum cdcsync_events_total "$1")/$(metric_sum cdcsync_events_total "$2")
  sleep 5
  c2=$(metric_sum cdcsync_events_total "$1")/$(metric_sum cdcsync_events_total "$2")
  log "events $1/$2 after the writes: $c1 then $c2"
  [ "$c1" = "$c2" ] || fail "counters still move after the writes stopped: a loop"
}

# assert_conflicts_recorded P Q TABLE...: conflicts were counted, every one recorded in
# state_dir/conflicts.jsonl as valid JSON naming one of the TABLEs, and logged.
assert_conflicts_recorded() {
  local p=$1 q=$2 conflicts records logged
  shift 2
  conflicts=$(($(metric_sum cdcsync_conflicts_total "$p") + $(metric_sum cdcsync_conflicts_total "$q")))
  records=$(wc -l <"$WORK/state/conflicts.jsonl" 2>/dev/null || echo 0)
  logged=$(grep -c "conflict on " "$WORK/service.log" || true)
  log "conflicts counted since the last start: $conflicts; recorded: $records; logged: $logged"
  [ "$records" -gt 0 ] || fail "no conflict recorded in conflicts.jsonl"
  [ "$logged" -ge "$records" ] || fail "conflicts recorded but not logged"
  python3 - "$WORK/state/conflicts.jsonl" "$@" <<'PY' || fail "conflicts.jsonl is not valid JSON lines"
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    assert r["table"] in sys.argv[2:] and r["winner"] in ("incoming", "sink"), r
    assert r["sink_version"]["vv"].startswith("{") and r["incoming_version"]["vv"].startswith("{"), r
PY
}

# kill9_during MIN MAX PID...: while every PID (the workload) still runs, kill -9 the service every
# MIN..MAX seconds and start it again; the number of kills is left in $kills.
kill9_during() {
  local lo=$1 hi=$2 p
  shift 2
  kills=0
  while :; do
    for p in "$@"; do kill -0 "$p" 2>/dev/null || return 0; done
    sleep "$(python3 -c "import random; print(round(random.uniform($lo, $hi), 2))")"
    for p in "$@"; do kill -0 "$p" 2>/dev/null || return 0; done
    service_kill9
    kills=$((kills + 1))
    log "kill -9 #$kills"
    sleep 0.3
    service_start
  done
}
