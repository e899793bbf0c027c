# Kafka helpers for the integration tests (sourced after tests/integration/lib.sh): the mock
# cluster of tests/kafka_mock/kafka_mock.c, and the kcat-based checker kafka_check.py.
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
KAFKA_MOCK=${KAFKA_MOCK:-$BUILDDIR/kafka_mock}
MOCK_PID=""

# Stops the mock before lib.sh's cleanup (which keeps the exit status).
trap 'rc=$?; set +e; kafka_mock_stop $rc; (exit $rc); cleanup' EXIT

# kafka_mock_stop RC — stops the mock; on a failed test (RC not 0) says whether the mock itself
# had died (an assertion in librdkafka's mock ends the whole cluster) and shows its log's end.
kafka_mock_stop() {
  [ -n "$MOCK_PID" ] || return 0
  if [ "$1" != 0 ]; then
    kill -0 "$MOCK_PID" 2>/dev/null || log "the mock kafka cluster had died; its log ends:"
    [ -f "$WORK/kafka_mock.log" ] && tail -n 15 "$WORK/kafka_mock.log" >&2
  fi
  kill -TERM "$MOCK_PID" 2>/dev/null
  wait "$MOCK_PID" 2>/dev/null
}

# Starts 3 mock brokers (ids 1..3) with the control pipe $WORK/kafka.ctl; sets KAFKA_BOOTSTRAP. The mock cannot CreateTopics (the sink then warns and
# relies on auto-creation), so the checkpoint topic is made here with its one partition.
kafka_mock_start() {
  "$KAFKA_MOCK" -b 3 -p "$WORK/kafka.bootstrap" -c "$WORK/kafka.ctl" -t cdcsync.checkpoints:1 "$@" >"$WORK/kafka_mock.out" 2>"$WORK/kafka_mock.log" &
  MOCK_PID=$!
  wait_for "the mock kafka cluster" 20 test -s "$WORK/kafka.bootstrap"
  KAFKA_BOOTSTRAP=$(cat "$WORK/kafka.bootstrap")
  log "mock kafka cluster at $KAFKA_BOOTSTRAP"
}

# kafka_check SOURCE_PG_NAME MODE TABLE... — runs the checker (see kafka_check.py), quiet.
kafka_check() {
  local name=$1 mode=$2
  shift 2
  local dir="PG_${name}_DIR" port="PG_${name}_PORT"
  python3 "$SRCDIR/tests/kafka_mock/kafka_check.py" --bootstrap "$KAFKA_BOOTSTRAP" --pghost "${!dir}" \
    --pgport "${!port}" --connector "$name" --mode "$mode" "$@"
}

# kafka_ctl "down 1" | "up 1" — sends a command to the mock and waits for its "ok" answer.
kafka_ctl() {
  local n
  n=$(grep -c "^ok \|^error" "$WORK/kafka_mock.out" || true)
  printf '%s\n' "$1" >"$WORK/kafka.ctl"
  wait_for "the mock's answer to '$1'" 10 bash -c "[ \$(grep -c '^ok \|^error' '$WORK/kafka_mock.out') -gt $n ]"
  tail -n 1 "$WORK/kafka_mock.out" | grep -q "^ok $1\$" || fail "kafka mock: '$1': $(tail -n 1 "$WORK/kafka_mock.out")"
}

# kafka_committed GROUP TOPIC:PARTITIONS — prints the offsets GROUP has committed for the topic's
# partitions, space-separated (-1: none), read without joining the group.
kafka_committed() {
  kafka_ctl "committed $1 $2"
  tail -n 2 "$WORK/kafka_mock.out" | head -n 1 | cut -d' ' -f4-
}
