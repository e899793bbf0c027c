#!/usr/bin/env bash
# The MySQL sink against a live MariaDB: batches applied as whole transactions with their
# checkpoint, types converted from PostgreSQL forms, refusals, and cdcsync's writes carrying the
# sink's server_id in the binlog (read back with the MySQL source).
set -euo pipefail
SRCDIR=${SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export MYSQL_PW=cdc-pw
tmp=$(mktemp -d /tmp/cdcsync-mysink.XXXXXX)
trap '"$SRCDIR/scripts/mysql.sh" stop "$tmp/my"; rm -rf "$tmp"' EXIT
"$SRCDIR/scripts/mysql.sh" start "$tmp/my" $PORT
M() { mariadb --socket="$tmp/my/mysql.sock" -uroot "$@"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
M -e "CREATE DATABASE test_sink"
start=$(M -N -e "SHOW MASTER STATUS" | awk '{print $1":"$2}')

timeout 60 "$BUILDDIR/mysql_sink_driver" $PORT 4242 0 >"$tmp/out0" 2>"$tmp/err" || { cat "$tmp/err"; fail "driver"; }
printf 'start found=0\nmissing: schema retriable=1 named\n' | diff -u - "$tmp/out0" || fail "missing table"

timeout 60 "$BUILDDIR/mysql_sink_driver" $PORT 4242 1 >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; fail "driver"; }
cat >"$tmp/want" <<'W'
start found=0
bad0: r=1 data retriable=0 named
bad1: r=1 data retriable=0 named
bad2: r=1 data retriable=0 named
bad-tail: r=1 data retriable=0 named
missing-tail: r=1 data retriable=0 named
missing-update: r=1 data retriable=0 named
missing-delete: r=1 data retriable=0 named
missing-single: r=1 data retriable=0 named
idempotent: ok
keyless: r=1 data brief
replaced: ok
missing-replaced: r=1 data retriable=0 named
unchanged: ok
replaced-after-partial: ok
held: durable=600
built while held: ok
last found=1 0/800
W
diff -u "$tmp/want" "$tmp/out" || fail "driver answers"
M -N test_sink -e "SELECT id, flag, HEX(data), ts, amount, \`we\`\`ird\` FROM orders ORDER BY id" >"$tmp/rows"
# batches 4-6 failed on a row the sink lacks and left nothing (no row 7, rows 1, 4, 20 as they
# were); batch 7 (at-least-once) upserted row 50 and ignored the deletes of missing rows; batch 9
# replaced rows 1 and 20 (20 twice), updated 1 and 50 and deleted 4; batch 10 left nothing; batch
# 11 changed row 20 and left 1 and 50 as they were; batch 12 updated 20 and replaced 50 after
# its partial update (amount 7 would mean the replacement overtook it); batches 13 and 14 updated
# 1 and 20
printf '1\t1\tNULL\tNULL\t13.00\tb13\n20\t1\tNULL\tNULL\t14.00\tb14\n50\t0\tNULL\tNULL\t8.00\tre50\n' >"$tmp/want"
sort -n "$tmp/want" | diff -u - <(sort -n "$tmp/rows") || fail "sink contents"
M -N -e "SELECT pipeline, pos_hi, pos_lo, pos_text FROM cdcsync.checkpoints" | diff -u <(printf 'p1\t0\t800\t0/320\n') - \
  || fail "checkpoint row"
M -N test_sink -e "SHOW CREATE TABLE orders" | grep -q 'PRIMARY KEY (`id`)' || fail "created table has no key"

# every write of the sink carries its server_id: the binlog source reports origin=4242
end=$(M -N -e "SHOW MASTER STATUS" | awk '{print $1":"$2}')
timeout 60 "$BUILDDIR/mysql_source_driver" $PORT 1001 test_sink.orders "$start" "$end" >"$tmp/src" 2>"$tmp/err" \
  || { cat "$tmp/err"; fail "source driver"; }
[ "$(grep -c '^BEGIN' "$tmp/src")" = 8 ] || fail "want 8 sink transactions in the binlog"
# batch 9 (the fourth): its rows replaced by a delete and an insert went as updates, one delete left
awk '/^BEGIN/ { n++ } n == 4 { printf "%s\n", $0 }' "$tmp/src" >"$tmp/last"
[ "$(grep -c '^D ' "$tmp/last")" = 1 ] && [ "$(grep -c '^I ' "$tmp/last")" = 0 ] ||
  { cat "$tmp/last"; fail "batch 9's delete-and-insert pairs were not sent as updates"; }
[ "$(grep '^BEGIN' "$tmp/src" | sort -u)" = "BEGIN origin=4242" ] || fail "origin is not the sink's server_id"
echo "ok"
