#!/usr/bin/env bash
# Quickstart on a fresh Debian machine: installs the packages, builds cdcsync, starts two
# throwaway PostgreSQL clusters on loopback, syncs one into the other, shows a change arriving
# and the sync lag, then stops everything (pass --keep to leave it running and play).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
KEEP=${1:-}

bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
echo "built $(build/cdcsync --version)"

WORK=$(mktemp -d /tmp/cdcsync-quickstart.XXXXXX)
chmod 755 "$WORK"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SRC_PORT=$(port) DST_PORT=$(port) METRICS_PORT=$(port)
PID=""
stop_all() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  bash scripts/pg.sh stop "$WORK/source" || true
  bash scripts/pg.sh stop "$WORK/sink" || true
  rm -rf "$WORK"
}
[ "$KEEP" = --keep ] || trap stop_all EXIT

bash scripts/pg.sh start "$WORK/source" "$SRC_PORT"
bash scripts/pg.sh start "$WORK/sink" "$DST_PORT"
src() { psql -X -h 127.0.0.1 -p "$SRC_PORT" -U postgres -d postgres -qAt "$@"; }
dst() { psql -X -h 127.0.0.1 -p "$DST_PORT" -U postgres -d postgres -qAt "$@"; }
echo "source PostgreSQL on 127.0.0.1:$SRC_PORT, sink on 127.0.0.1:$DST_PORT"

src -c "CREATE TABLE orders (id int PRIMARY KEY, customer text, amount numeric(10,2), at timestamptz DEFAULT now())"
src -c "INSERT INTO orders (id, customer, amount) SELECT g, 'customer ' || g, g * 9.99 FROM generate_series(1, 1000) g"

cat >"$WORK/cdcsync.conf" <<CONF
[service]
state_dir = $WORK/state
metrics_listen = 127.0.0.1:$METRICS_PORT

[connector.shop]
type = postgres
dsn = host=127.0.0.1 port=$SRC_PORT user=postgres dbname=postgres

[connector.replica]
type = postgres
dsn = host=127.0.0.1 port=$DST_PORT user=postgres dbname=postgres
create_tables = yes

[pipeline.orders]
source = shop
sink = replica
tables = public.orders
CONF
chmod 600 "$WORK/cdcsync.conf"
build/cdcsync -c "$WORK/cdcsync.conf" check
build/cdcsync -c "$WORK/cdcsync.conf" run >"$WORK/cdcsync.log" 2>&1 &
PID=$!

wait_rows() {
  for _ in $(seq 1 150); do
    [ "$(dst -c "SELECT count(*) FROM orders WHERE $1" 2>/dev/null || echo 0)" = "$2" ] && return 0
    sleep 0.2
  done
  echo "quickstart: the sink did not catch up; log:" >&2
  cat "$WORK/cdcsync.log" >&2
  exit 1
}
wait_rows "true" 1000
echo "initial snapshot: 1000 rows copied to the sink"

src -c "INSERT INTO orders (id, customer, amount) VALUES (1001, 'quickstart', 42.00)"
wait_rows "id = 1001 AND customer = 'quickstart'" 1
echo "a new order arrived on the sink: $(dst -c "SELECT id, customer, amount FROM orders WHERE id = 1001")"

echo
build/cdcsync -c "$WORK/cdcsync.conf" status
echo
echo "sync lag from http://127.0.0.1:$METRICS_PORT/metrics:"
curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | grep -E '^cdcsync_pipeline_(lag|up)'
echo
echo "service log:"
sed 's/^/  /' "$WORK/cdcsync.log"
if [ "$KEEP" = --keep ]; then
  echo
  echo "left running: cdcsync pid $PID, conf $WORK/cdcsync.conf"
  echo "  psql -h 127.0.0.1 -p $SRC_PORT -U postgres    # write here"
  echo "  psql -h 127.0.0.1 -p $DST_PORT -U postgres    # and see it here"
fi
