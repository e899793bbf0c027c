#!/usr/bin/env bash
# Local faults under state_dir, on a tiny file system (a tmpfs mounted for the test): the spill
# directory of a pipeline removed under it, state_dir full while a large PostgreSQL transaction
# spills, and state_dir full under a bidirectional pair (row versions in LMDB, conflict records).
# Each fault must stop only the pipeline it hits, with an error counted as kind "disk" and shown by
# /healthz, while the other pipelines go on; once the cause is gone the pipeline resumes by itself
# (no restart of the service), and every target ends equal to its source (digest of the ordered
# contents: nothing lost, nothing applied twice — `big` has no primary key, so a transaction
# applied twice would show).
#
# Pipelines, between two clusters src and dst: big (src.postgres → dst.postgres, table big, large
# transactions that spill), other (src.other → dst.other), and ab/ba (src.bidi ↔ dst.bidi).
source "$(dirname "$0")/../integration/lib.sh"

STATE=$WORK/state
mkdir -p "$STATE"
if ! mount -t tmpfs -o size=2m,mode=0700 tmpfs "$STATE" 2>"$WORK/mount.err"; then
  log "SKIP: cannot mount a tmpfs for state_dir here ($(cat "$WORK/mount.err")); this test needs root and mounts"
  exit 77
fi
# The service goes before the file system it writes to; then lib.sh's cleanup.
# (set +e: under errexit the trap would end at the first failing command, cleanup never run.)
trap 'rc=$?; set +e; [ -n "$SERVICE_PID" ] && kill -9 "$SERVICE_PID" 2>/dev/null; umount -l "$STATE" 2>/dev/null; (exit $rc); cleanup' EXIT

pg_start src
pg_start dst
# Transactions above 64 kB of decoded changes are streamed while in progress, so they spill.
psql_on src -c "ALTER SYSTEM SET logical_decoding_work_mem = '64kB'" -c "SELECT pg_reload_conf()" >/dev/null
for n in src dst; do
  psql_on $n -c "CREATE DATABASE other" -c "CREATE DATABASE bidi"
  psql_on $n -c "CREATE TABLE big (id int NOT NULL, v text)" # no key: applied exactly once by position
  psql_on $n -d other -c "CREATE TABLE t (id int PRIMARY KEY, v text)"
  psql_on $n -d bidi -c "CREATE TABLE acc (id int PRIMARY KEY, v text)"
done
MPORT=$(free_port)
dsn_db() { local port="PG_${1}_PORT"; printf 'host=127.0.0.1 port=%s user=postgres dbname=%s' "${!port}" "$2"; }

cat >"$WORK/cdcsync.conf" <<CONF
[service]
state_dir = $STATE
metrics_listen = 127.0.0.1:$MPORT

[connector.src]
type = postgres
dsn = $(dsn_db src postgres)

[connector.dst]
type = postgres
dsn = $(dsn_db dst postgres)

[connector.src_other]
type = postgres
dsn = $(dsn_db src other)

[connector.dst_other]
type = postgres
dsn = $(dsn_db dst other)

[connector.a]
type = postgres
dsn = $(dsn_db src bidi)

[connector.b]
type = postgres
dsn = $(dsn_db dst bidi)

[pipeline.big]
source = src
sink = dst
tables = public.big

[pipeline.other]
source = src_other
sink = dst_other
tables = public.t

[pipeline.ab]
source = a
sink = b
tables = public.acc

[pipeline.ba]
source = b
sink = a
tables = public.acc
CONF

# db_digest NAME DB TABLE — count and digest of the ordered contents.
db_digest() {
  psql_on "$1" -d "$2" -c "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, E'\n' ORDER BY t::text COLLATE \"C\")), '') FROM $3 t"
}
db_equal() { [ "$(db_digest src "$1" "$2")" = "$(db_digest dst "$1" "$2")" ]; }
errors_of() { # errors_of PIPELINE KIND: cdcsync_errors_total of that kind (0 when absent)
  curl -sf "http://127.0.0.1:$MPORT/metrics" |
    awk -v s="cdcsync_errors_total{pipeline=\"$1\",kind=\"$2\"}" '$1 == s { v = $2 } END { print v + 0 }'
}
errors_above() { [ "$(errors_of "$1" "$2")" -gt "$3" ]; }
unhealthy_naming() { # /healthz says 503 and names the pipeline
  local code
  code=$(curl -s -o "$WORK/healthz.txt" -w '%{http_code}' --max-time 5 "http://127.0.0.1:$MPORT/healthz")
  [ "$code" = 503 ] && grep -q "$1" "$WORK/healthz.txt"
}
healthy() { curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:$MPORT/healthz"; }
# other_flows N — a row written on src.other reaches dst.other: that pipeline is not affected.
other_flows() {
  psql_on src -d other -c "INSERT INTO t VALUES ($1, 'while $2')"
  wait_for "pipeline other still streaming ($2)" 30 db_equal other t
}

streamed_txns() { # streamed_txns SLOT — in-progress transactions the slot has streamed so far
  [ "$(psql_on src -c "SELECT coalesce((SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = '$1'), 0)")" -gt 0 ]
}

service_start
PID0=$SERVICE_PID
wait_for "every pipeline streaming" 60 healthy
# Right after a slot is created PostgreSQL may still decode a large transaction whole instead of
# streaming it (nothing would spill): large transactions until one is seen streamed.
for i in 1 2 3 4 5; do
  psql_on src -c "INSERT INTO big SELECT -g, 'warm-up' FROM generate_series(1, 20000) g"
  wait_for "big caught up (warm-up $i)" 60 db_equal postgres big
  if streamed_txns cdcsync_big; then break; fi
  sleep 1
done
wait_for "a transaction of big streamed in progress" 10 streamed_txns cdcsync_big

# --- the spill directory removed under a running pipeline ---
log "spill directory removed, then a transaction that spills"
rm -rf "$STATE/spill-big"
psql_on src -c "INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 20000) g"
wait_for "a disk error of pipeline big" 60 errors_above big disk 0
assert_grep "the spill directory was removed while the pipeline ran" "$WORK/service.log"
wait_for "big resumed by itself and caught up" 120 db_equal postgres big
[ -d "$STATE/spill-big" ] || fail "the spill directory was not created again"
[ "$(errors_of big internal)" = 0 ] || fail "a disk fault was counted as internal"

# --- state_dir full while a large transaction spills ---
log "state_dir (2 MB) full while a 60,000-row transaction spills"
before=$(errors_of big disk)
psql_on src -c "INSERT INTO big SELECT g, md5(g::text) FROM generate_series(100001, 160000) g"
wait_for "big failed with a disk error" 60 errors_above big disk "$before"
wait_for "/healthz names big" 30 unhealthy_naming big
assert_grep "No space left on device" "$WORK/service.log"
other_flows 1 "big is failed"
log "freeing space (tmpfs grown to 16 MB)"
mount -o remount,size=16m "$STATE"
wait_for "big resumed by itself and caught up" 120 db_equal postgres big
wait_for "every pipeline streaming again" 60 healthy

# --- state_dir full under a bidirectional pair: row versions (LMDB) and conflict records ---
log "bidirectional pair: 50 shared rows, then state_dir filled"
psql_on src -d bidi -c "INSERT INTO acc SELECT g, 'first' FROM generate_series(1, 50) g"
wait_for "acc synced" 60 db_equal bidi acc
dd if=/dev/zero of="$STATE/filler" bs=64k 2>/dev/null || true
before_ab=$(errors_of ab disk) before_ba=$(errors_of ba disk)
# The same 50 rows updated on both sides (conflicts), and new rows on each side: the row versions
# need new pages of LMDB, which the full file system refuses.
psql_on src -d bidi -c "BEGIN; UPDATE acc SET v = 'a' WHERE id <= 50;
                        INSERT INTO acc SELECT g, 'a' FROM generate_series(1001, 4000) g; COMMIT"
psql_on dst -d bidi -c "BEGIN; UPDATE acc SET v = 'b' WHERE id <= 50;
                        INSERT INTO acc SELECT g, 'b' FROM generate_series(10001, 13000) g; COMMIT"
wait_for "ab failed with a disk error" 60 errors_above ab disk "$before_ab"
wait_for "ba failed with a disk error" 60 errors_above ba disk "$before_ba"
wait_for "/healthz names ab" 30 unhealthy_naming ab
other_flows 2 "ab and ba are failed"
log "freeing space (filler removed)"
rm -f "$STATE/filler"
wait_for "ab and ba resumed by themselves and caught up" 180 db_equal bidi acc
wait_for "every pipeline streaming again" 60 healthy
[ "$(psql_on src -d bidi -c "SELECT count(DISTINCT v) FROM acc WHERE id <= 50")" -ge 1 ] || fail "shared rows lost"
[ "$(psql_on src -d bidi -c "SELECT count(*) FROM acc")" = 6050 ] || fail "rows lost or duplicated on the bidi pair"
python3 - "$STATE/conflicts.jsonl" <<'PY' || fail "conflicts.jsonl holds a broken line"
import json, sys
n = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    assert r["table"] == "public.acc" and r["winner"] in ("incoming", "sink"), r
    n += 1
assert n > 0, "no conflict recorded"
PY
for p in big ab ba; do
  [ "$(errors_of "$p" internal)" = 0 ] || fail "pipeline $p counted an internal error"
done
[ "$(errors_of other disk)" = 0 ] || fail "pipeline other was hit by the others' faults"
[ "$SERVICE_PID" = "$PID0" ] && kill -0 "$SERVICE_PID" || fail "the service was restarted or died"
for db_t in "postgres big" "other t" "bidi acc"; do
  set -- $db_t
  [ "$(db_digest src "$1" "$2")" = "$(db_digest dst "$1" "$2")" ] || fail "$1.$2 differs between src and dst"
done
service_stop
finish
