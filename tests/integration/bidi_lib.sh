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

# The conflict records and log lines there were when the service last started (kill9_during):
# what the last run, which no kill cut short, added.
conflict_records() { wc -l <"$WORK/state/conflicts.jsonl" 2>/dev/null || echo 0; }
conflict_logged() { grep -c "conflict on " "$WORK/service.log" 2>/dev/null || true; }
RECORDS_AT_START=0
LOGGED_AT_START=0

# assert_conflicts_recorded P Q TABLE...: conflicts were recorded in state_dir/conflicts.jsonl as
# valid JSON naming one of the TABLEs, and, exactly as guaranteed (README "Conflict records"):
# each conflict is appended to the file, then counted, then logged, by the one thread that
# applies its pipeline's changes. So in the last run (no kill) records, count and log lines are
# equal; across the kills, every logged conflict was recorded, and a kill -9 between the append
# and the log line loses at most that line, one per pipeline (records are at least once: a batch
# redone after a crash records its conflicts again, the log is best effort).
assert_conflicts_recorded() {
  local p=$1 q=$2 conflicts records logged
  shift 2
  conflicts=$(($(metric_sum cdcsync_conflicts_total "$p") + $(metric_sum cdcsync_conflicts_total "$q")))
  records=$(conflict_records)
  logged=$(conflict_logged)
  log "conflicts recorded: $records, logged: $logged; in the last run: counted $conflicts," \
    "recorded $((records - RECORDS_AT_START)), logged $((logged - LOGGED_AT_START)); ${kills:-0} kills"
  [ "$records" -gt 0 ] || fail "no conflict recorded in conflicts.jsonl"
  [ "$((records - RECORDS_AT_START))" -eq "$conflicts" ] && [ "$((logged - LOGGED_AT_START))" -eq "$conflicts" ] ||
    fail "the last run (no kill) counted $conflicts conflicts, recorded $((records - RECORDS_AT_START))," \
      "logged $((logged - LOGGED_AT_START)): each conflict is recorded, counted and logged once"
  [ "$logged" -le "$records" ] || fail "more conflicts logged ($logged) than recorded ($records)"
  [ "$((records - logged))" -le "$((2 * ${kills:-0}))" ] ||
    fail "$((records - logged)) conflicts recorded but not logged: more than one per pipeline per kill (${kills:-0})"
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
    RECORDS_AT_START=$(conflict_records)
    LOGGED_AT_START=$(conflict_logged)
    service_start
  done
}
