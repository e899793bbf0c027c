# High-availability helpers (#16) for the two-instance tests test_ha_*.sh; sourced after lib.sh
# (and mylib.sh / kafka_lib.sh when used). The test defines, before calling them:
#   holder        prints "NAME GENERATION" of the lease row of pipeline ha in the sink
#   src_max       prints the highest sequence number the writer has written so far
#   sink_reached N  succeeds once the sink holds sequence number N or higher
# and may define ha_on_takeover (called after each measured takeover, see ha_kill_leader).
# Both instances run pipeline "ha" with the same conf but their own instance name, state_dir and
# metrics port.

TAKEOVER=${TAKEOVER:-3}
PORTS=() PIDS=("" "")

# ha_confs — writes $WORK/c0.conf and $WORK/c1.conf: the [service] section with ha = on, then
# stdin (the connectors and [pipeline.ha]).
ha_confs() {
  local body i
  body=$(cat)
  for i in 0 1; do
    PORTS[$i]=$(free_port)
    cat >"$WORK/c$i.conf" <<CONF
[service]
state_dir = $WORK/state$i
metrics_listen = 127.0.0.1:${PORTS[$i]}
instance = node$i
ha = on
ha_takeover_s = $TAKEOVER

$body
CONF
    chmod 600 "$WORK/c$i.conf"
  done
}

start_node() {
  "$CDCSYNC" -c "$WORK/c$1.conf" run >>"$WORK/service$1.log" 2>&1 &
  PIDS[$1]=$!
}
node_of() { case "$1" in node0*) echo 0 ;; node1*) echo 1 ;; *) echo "" ;; esac; }
gen_above() { local h; h=$(holder) && [ -n "$h" ] && [ "${h#* }" -gt "$1" ]; }
holder_is() { local h; h=$(holder) && [ "${h% *}" = "$1" ]; }
cleanup_nodes() { for p in "${PIDS[@]}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null; done; true; }
# cleanup exits with the test's status; a Kafka test's mock cluster is stopped too
trap 'rc=$?; set +e; cleanup_nodes; declare -F kafka_mock_stop >/dev/null && kafka_mock_stop $rc; (exit $rc); cleanup' EXIT
leader_metric() { curl -s "http://127.0.0.1:${PORTS[$1]}/metrics" | awk '$1 == "cdcsync_pipeline_leader{pipeline=\"ha\"}" {print $2}'; }
metric_is() { [ "$(leader_metric "$1")" = "$2" ]; }
# The sink has applied every row the writer had written when called: the current leader runs.
wait_applied() { local m; m=$(($(src_max) + 1)); wait_for "the sink applies the writer's rows up to $m" 60 sink_reached "$m"; }

# ha_pg_writer NAME — a writer into PostgreSQL cluster NAME all along, one transaction every
# ~10 ms: the next sequence number into seqlog and a bump of counter row 1. Sets WRITER (its pid)
# and STOPFILE (touch it to stop the writer, then wait "$WRITER").
ha_pg_writer() {
  export STOPFILE="$WORK/stop"
  local dir="PG_$1_DIR" port="PG_$1_PORT"
  python3 - "${!dir}" "${!port}" >"$WORK/writer.log" 2>&1 <<'PY' &
import subprocess, sys, time, os
d, p = sys.argv[1], sys.argv[2]
proc = subprocess.Popen(["psql", "-X", "-q", "-h", d, "-p", p, "-U", "postgres", "-v", "ON_ERROR_STOP=1"],
                        stdin=subprocess.PIPE, text=True)
n = 0
while not os.path.exists(os.environ["STOPFILE"]):
    n += 1
    proc.stdin.write(f"BEGIN; INSERT INTO seqlog (n) VALUES ({n}); UPDATE counter SET n = n + 1 WHERE id = 1; COMMIT;\n")
    proc.stdin.flush()
    time.sleep(0.01)
proc.stdin.close()
proc.wait()
print("wrote", n)
PY
  WRITER=$!
}

secs_since() { python3 -c "print(f'{$EPOCHREALTIME - $1:.2f}')"; }

measure_takeover() { # $1: generation before; prints the seconds until a higher one holds the lease
  local t0=$EPOCHREALTIME
  wait_for "a takeover after generation $1" $((TAKEOVER * 10)) gen_above "$1"
  secs_since "$t0"
}

# ha_kill_leader K — waits until the sink has the writer's rows, kill -9s the leader, prints how
# long until the other instance held the lease, restarts the killed one (as standby). Sets
# HA_LEADER (the killed one), HA_T0 (when it was killed) and HA_N0 (the writer's sequence number
# then), and calls ha_on_takeover K if the test defines it.
ha_kill_leader() {
  local h gen secs
  wait_applied
  h=$(holder)
  HA_LEADER=$(node_of "$h")
  gen=${h#* }
  [ -n "$HA_LEADER" ] || fail "no leader: $h"
  log "kill -9 #$1 of node$HA_LEADER (generation $gen)"
  HA_N0=$(src_max)
  HA_T0=$EPOCHREALTIME
  kill -9 "${PIDS[$HA_LEADER]}"
  wait "${PIDS[$HA_LEADER]}" 2>/dev/null || true
  secs=$(measure_takeover "$gen")
  log "takeover #$1: $(holder) after ${secs}s (ha_takeover_s = $TAKEOVER)"
  if declare -F ha_on_takeover >/dev/null; then ha_on_takeover "#$1"; fi
  start_node "$HA_LEADER"
}

# ha_sigstop_leader — freezes the leader past the takeover time while writes go on, prints how
# long until the other held the lease, waits until the new leader applied rows written after the
# freeze, resumes the frozen one and waits until it reports cdcsync_pipeline_leader 0 and logs that
# it steps down (its attempt ended: whatever it was to commit was refused or rolled back). Sets
# HA_LEADER (the frozen one), HA_T0, HA_N0; calls ha_on_takeover "after SIGSTOP" and, just before
# the SIGCONT, ha_before_sigcont if defined.
ha_sigstop_leader() {
  local h gen secs
  wait_applied
  h=$(holder)
  HA_LEADER=$(node_of "$h")
  gen=${h#* }
  [ -n "$HA_LEADER" ] || fail "no leader: $h"
  log "SIGSTOP node$HA_LEADER (generation $gen)"
  HA_N0=$(src_max)
  HA_T0=$EPOCHREALTIME
  kill -STOP "${PIDS[$HA_LEADER]}"
  secs=$(measure_takeover "$gen")
  log "takeover after SIGSTOP: $(holder) after ${secs}s"
  if declare -F ha_on_takeover >/dev/null; then ha_on_takeover "after SIGSTOP"; fi
  wait_applied
  if declare -F ha_before_sigcont >/dev/null; then ha_before_sigcont; fi
  HA_STEPS=$(grep -c "stepping down" "$WORK/service$HA_LEADER.log" || true)
  kill -CONT "${PIDS[$HA_LEADER]}"
  log "SIGCONT node$HA_LEADER"
  wait_for "node$HA_LEADER steps down (cdcsync_pipeline_leader 0)" 30 metric_is "$HA_LEADER" 0
  wait_for "node$HA_LEADER logs that it steps down" 30 stepped_down
}
stepped_down() { [ "$(grep -c "stepping down" "$WORK/service$HA_LEADER.log")" -gt "$HA_STEPS" ]; }
