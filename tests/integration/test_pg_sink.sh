#!/usr/bin/env bash
# The PostgreSQL sink against a throwaway cluster: tests/integration/pg_sink_driver.c checks
# every target table and the checkpoint exactly. Env: BUILDDIR, SRCDIR (set by CTest);
# PG_SINK_PORT (default: a free port); PG_SINK_BENCH=1 also measures 100k inserts.
set -euo pipefail
SRCDIR=${SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
PORT=${PG_SINK_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
driver=$BUILDDIR/pg_sink_driver
[ -x "$driver" ] || { echo "missing $driver: build first" >&2; exit 1; }

dir=$(mktemp -d /tmp/cdcsync-pgsink.XXXXXX)
cleanup() {
  "$SRCDIR/scripts/pg.sh" stop "$dir/pg" || true
  rm -rf "$dir"
}
trap cleanup EXIT

"$SRCDIR/scripts/pg.sh" start "$dir/pg" "$PORT"
dsn="host=127.0.0.1 port=$PORT user=postgres dbname=postgres"
"$driver" test "$dsn"
if [ "${PG_SINK_BENCH:-0}" = 1 ]; then
  "$driver" bench "$dsn" 100000
fi
