#!/usr/bin/env bash
# Slow clients do not take the operations endpoint away from a monitoring system: 32 clients
# trickling a request one byte every 5 s from 127.0.0.1 (the scraper's own address), and 16 more
# from each of 127.0.0.2-9, while /healthz and /metrics are asked from 127.0.0.1. Both answer
# with their real contents, every trickling connection is closed by the service once it had its
# time to send a request, and the service says so in its log. No database is needed: the
# pipeline's servers are absent, so it retries (and /healthz rightly answers 503).
source "$(dirname "$0")/lib.sh"

TRICKLE_PID=""
stop_trickle() {
  [ -n "$TRICKLE_PID" ] || return 0
  kill -TERM "$TRICKLE_PID" 2>/dev/null || true
  wait "$TRICKLE_PID" 2>/dev/null || true
  TRICKLE_PID=""
}
trap 'rc=$?; set +e; stop_trickle; (exit $rc); cleanup' EXIT

MPORT=$(free_port)
DEAD=$(free_port) # nothing listens there
write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" <<CONF
[connector.src]
type = postgres
dsn = host=127.0.0.1 port=$DEAD user=nobody dbname=src connect_timeout=2

[connector.dst]
type = postgres
dsn = host=127.0.0.1 port=$DEAD user=nobody dbname=dst connect_timeout=2

[pipeline.main]
source = src
sink = dst
tables = public.t
CONF
service_start
wait_for "the endpoint answers" 30 curl -sS -o /dev/null --max-time 5 "http://127.0.0.1:$MPORT/healthz"

# The tricklers: each connects, sends one byte of a request, then one more every 5 s; the status
# file says how many connected and how many the service has closed since.
cat >"$WORK/trickle.py" <<'PY'
import os, select, socket, sys, time
port, status = int(sys.argv[1]), sys.argv[2]
request = b"GET /metrics HTTP/1.1\r\nHost: cdcsync\r\nUser-Agent: trickle\r\nX-Pad: " + b"x" * 200
socks, closed, sent = [], set(), {}
def report():
    with open(status + ".tmp", "w") as f:
        f.write("%d %d\n" % (len(socks), len(closed)))
    os.rename(status + ".tmp", status)
for spec in sys.argv[3:]:
    addr, n = spec.split(":")
    for _ in range(int(n)):
        s = socket.socket()
        s.bind((addr, 0))
        s.connect(("127.0.0.1", port))
        s.send(request[:1])
        sent[s] = 1
        socks.append(s)
report()
last = time.monotonic()
while True:
    live = [s for s in socks if s not in closed]
    ready = select.select(live, [], [], 0.2)[0] if live else time.sleep(0.2) or []
    for s in ready:
        try:
            if s.recv(4096) == b"":
                closed.add(s)
        except OSError:
            closed.add(s)
    if time.monotonic() - last >= 5:
        last = time.monotonic()
        for s in socks:
            if s not in closed:
                try:
                    s.send(request[sent[s]:sent[s] + 1])
                    sent[s] += 1
                except OSError:
                    closed.add(s)
    report()
PY
specs=("127.0.0.1:32")
for i in 2 3 4 5 6 7 8 9; do specs+=("127.0.0.$i:16"); done
python3 "$WORK/trickle.py" "$MPORT" "$WORK/trickle.status" "${specs[@]}" &
TRICKLE_PID=$!
all_connected() { read -r c _ <"$WORK/trickle.status" && [ "$c" -eq 160 ]; }
wait_for "160 trickling clients connected" 30 all_connected
log "trickling clients: $(cat "$WORK/trickle.status") (connected, closed by the service)"

# While they trickle: both endpoints answer, with what they should say.
code=$(curl -sS -o "$WORK/healthz.body" -w '%{http_code}' --max-time 10 "http://127.0.0.1:$MPORT/healthz") ||
  fail "/healthz did not answer while slow clients were connected"
[ "$code" = 503 ] || fail "/healthz answered $code, not 503 (the pipeline cannot connect)"
assert_grep "pipeline main: retrying" "$WORK/healthz.body"
curl -sS --max-time 10 "http://127.0.0.1:$MPORT/metrics" >"$WORK/metrics.txt" ||
  fail "/metrics did not answer while slow clients were connected"
assert_grep 'cdcsync_pipeline_up{pipeline="main"} 0' "$WORK/metrics.txt"
log "/healthz and /metrics answered with $(cat "$WORK/trickle.status") trickling"

# Every trickling connection is closed: the newest evict the oldest of their address, the rest
# when their time to send a request is up (5 s, while they have sent 2 of its 240 bytes).
all_closed() { read -r c k <"$WORK/trickle.status" && [ "$k" -eq "$c" ]; }
wait_for "the service closed every trickling connection" 30 all_closed
log "trickling clients: $(cat "$WORK/trickle.status") (connected, closed by the service)"
stop_trickle
wait_for "the closes in the log" 70 grep -q "connection(s) of slow clients" "$WORK/service.log"
grep "slow clients" "$WORK/service.log" >&2
curl -sS -o /dev/null --max-time 10 "http://127.0.0.1:$MPORT/metrics" || fail "/metrics does not answer afterwards"
service_stop
finish
