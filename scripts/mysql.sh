#!/usr/bin/env bash
# Throwaway MariaDB servers on loopback, in temp dirs.
#   scripts/mysql.sh start DIR PORT   install a data dir (as the mysql user when root) and start
#   scripts/mysql.sh stop DIR         shutdown (no error when not running)
# The server: log_bin, binlog_format=ROW, binlog_row_image=FULL, gtid_strict_mode, socket
# DIR/mysql.sock, listen 127.0.0.1:PORT. Users: root via the socket (unix_socket auth for the OS
# root user), `cdc`@`127.0.0.1` (password "cdc-pw") with REPLICATION SLAVE, REPLICATION CLIENT,
# SELECT and BINLOG REPLAY (a sink sets its session server_id) on everything, and all privileges
# on the test databases (`test`, `test\_%`, `cdcsync`). Env overrides: MYSQL_SERVER_ID (default 1),
# MYSQL_FLUSH_AT_COMMIT (innodb_flush_log_at_trx_commit, default 2), MYSQL_EXTRA_CNF (more
# [mariadbd] lines, one option a line, e.g. "log_bin_compress = ON").
set -euo pipefail
cmd=${1:-} dir=${2:-}

as_mysql() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u mysql -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
  port=$3
  mkdir -p "$dir"
  dir=$(realpath "$dir")
  if [ "$(id -u)" -eq 0 ]; then
    # The server runs as mysql: every parent must be traversable (mktemp -d makes 0700 dirs).
    d=$(dirname "$dir")
    while [ "$d" != / ]; do chmod o+x "$d" 2>/dev/null || true; d=$(dirname "$d"); done
    chown mysql: "$dir"; chmod 700 "$dir"
  fi
  cat >"$dir/my.cnf" <<CNF
[mariadbd]
datadir = $dir/data
socket = $dir/mysql.sock
pid-file = $dir/mysqld.pid
bind-address = 127.0.0.1
port = $port
log_error = $dir/server.log
log_bin = $dir/data/mariadb-bin
binlog_format = ROW
binlog_row_image = FULL
server_id = ${MYSQL_SERVER_ID:-1}
gtid_strict_mode = ON
innodb_flush_log_at_trx_commit = ${MYSQL_FLUSH_AT_COMMIT:-2}
innodb_buffer_pool_size = 64M
innodb_log_file_size = 64M
character_set_server = utf8mb4
collation_server = utf8mb4_general_ci
skip_name_resolve = ON
performance_schema = OFF
max_connections = 100
${MYSQL_EXTRA_CNF:-}
CNF
  if [ ! -d "$dir/data/mysql" ]; then
    as_mysql mariadb-install-db --defaults-file="$dir/my.cnf" --auth-root-authentication-method=socket \
      --skip-test-db >"$dir/install.log" 2>&1
  fi
  as_mysql mariadbd --defaults-file="$dir/my.cnf" >>"$dir/server.log" 2>&1 &
  for _ in $(seq 1 120); do
    if mariadb-admin --socket="$dir/mysql.sock" -uroot ping >/dev/null 2>&1; then break; fi
    sleep 0.5
  done
  mariadb-admin --socket="$dir/mysql.sock" -uroot ping >/dev/null 2>&1 || {
    echo "mariadb did not start, see $dir/server.log" >&2; tail -20 "$dir/server.log" >&2; exit 1; }
  # Idempotent: the data dir may be reused across start/stop.
  mariadb --socket="$dir/mysql.sock" -uroot <<'SQL'
CREATE USER IF NOT EXISTS 'cdc'@'127.0.0.1' IDENTIFIED BY 'cdc-pw';
CREATE USER IF NOT EXISTS 'cdc'@'localhost' IDENTIFIED BY 'cdc-pw';
GRANT REPLICATION SLAVE, REPLICATION CLIENT, BINLOG REPLAY, SELECT ON *.* TO 'cdc'@'127.0.0.1', 'cdc'@'localhost';
GRANT ALL PRIVILEGES ON `test`.* TO 'cdc'@'127.0.0.1', 'cdc'@'localhost';
GRANT ALL PRIVILEGES ON `test\_%`.* TO 'cdc'@'127.0.0.1', 'cdc'@'localhost';
GRANT ALL PRIVILEGES ON `cdcsync`.* TO 'cdc'@'127.0.0.1', 'cdc'@'localhost';
CREATE DATABASE IF NOT EXISTS test;
SQL
  ;;
stop)
  dir=$(realpath "$dir" 2>/dev/null || echo "$dir")
  [ -f "$dir/mysqld.pid" ] || exit 0
  pid=$(cat "$dir/mysqld.pid" 2>/dev/null || true)
  mariadb-admin --socket="$dir/mysql.sock" -uroot shutdown >/dev/null 2>&1 || true
  if [ -n "$pid" ]; then
    for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  ;;
*)
  echo "usage: $0 start DIR PORT | stop DIR" >&2
  exit 2
  ;;
esac
