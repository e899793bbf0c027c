#!/usr/bin/env bash
# Throwaway PostgreSQL 15 clusters on loopback, in temp dirs.
#   scripts/pg.sh start DIR PORT   initdb (as the postgres user when root) and start; prints nothing
#   scripts/pg.sh stop DIR         fast shutdown (no error when not running)
#   scripts/pg.sh restart DIR
# The cluster: wal_level=logical, unix socket in DIR, listen 127.0.0.1:PORT, superuser "postgres"
# trusted on loopback, role "cdc_pw" (password "s3cret-pw", scram) for password tests.
set -euo pipefail
PGBIN=/usr/lib/postgresql/15/bin
cmd=$1 dir=$2

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
  port=$3
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    # The server runs as postgres: every parent must be traversable (mktemp -d makes 0700 dirs).
    d=$(dirname "$(realpath "$dir")")
    while [ "$d" != / ]; do chmod o+x "$d" 2>/dev/null || true; d=$(dirname "$d"); done
    chown postgres: "$dir"; chmod 700 "$dir"
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1
    cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
max_worker_processes = 16
max_logical_replication_workers = 8
fsync = ${PG_FSYNC:-off}
synchronous_commit = ${PG_SYNC_COMMIT:-on}
shared_buffers = 256MB
max_wal_size = 4GB
logging_collector = off
log_min_messages = warning
password_encryption = scram-sha-256
CONF
    cat >"$dir/data/pg_hba.conf" <<HBA
local all all trust
host all cdc_pw 127.0.0.1/32 scram-sha-256
host replication cdc_pw 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
HBA
  fi
  if ! as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null; then
    echo "scripts/pg.sh: the server on port $port did not start; its log ($dir/server.log):" >&2
    tail -n 20 "$dir/server.log" >&2 || true
    exit 1
  fi
  as_pg psql -h "$dir" -p "$port" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cdc_pw') THEN
    CREATE ROLE cdc_pw LOGIN SUPERUSER REPLICATION PASSWORD 's3cret-pw';
  END IF;
END \$\$;
SQL
  ;;
stop)
  [ -f "$dir/data/postmaster.pid" ] || exit 0
  as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  ;;
restart)
  as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m fast -w -t 60 restart >/dev/null
  ;;
*)
  echo "usage: $0 start DIR PORT | stop DIR | restart DIR" >&2
  exit 2
  ;;
esac
