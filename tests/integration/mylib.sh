# MariaDB helpers for the cross-system pipeline tests, on top of lib.sh (sourced after it):
# throwaway servers, a client per server, and the ordered-contents comparer (compare_rows.py).

# my_start NAME [SERVER_ID] → sets MY_<NAME>_DIR and MY_<NAME>_PORT, starts the server.
my_start() {
  local name=$1 port
  port=$(free_port)
  MYSQL_SERVER_ID=${2:-1} bash "$SRCDIR/scripts/mysql.sh" start "$WORK/my_$name" "$port" >/dev/null
  SERVERS+=("my:$WORK/my_$name")
  printf -v "MY_${name}_DIR" '%s' "$WORK/my_$name"
  printf -v "MY_${name}_PORT" '%s' "$port"
}

# my_on NAME [mariadb args...] — as root over the socket, database test, batch output.
my_on() {
  local name=$1
  shift
  local dir="MY_${name}_DIR"
  mariadb --socket="${!dir}/mysql.sock" -uroot -N -B -r --default-character-set=utf8mb4 --database=test "$@"
}

# The [connector.X] lines of a MariaDB server (user cdc, password from a file).
my_connector() {
  local name=$1 sid=$2 port="MY_${1}_PORT"
  printf 'cdc-pw\n' >"$WORK/$name.pass"
  chmod 600 "$WORK/$name.pass"
  printf 'type = mysql\nhost = 127.0.0.1\nport = %s\nuser = cdc\npassword_file = %s\ndatabase = test\nserver_id = %s\n' \
    "${!port}" "$WORK/$name.pass" "$sid"
}

# rows_equal KINDS FILE_A FILE_B — the comparer: one line per row, tab-separated fields.
rows_equal() {
  python3 "$SRCDIR/tests/integration/compare_rows.py" "$@"
}

# metric NAME_WITH_LABELS — the value of one series on the service's /metrics (empty if absent).
metric() {
  curl -s "http://127.0.0.1:$MPORT/metrics" | awk -v k="$1" 'index($0, k " ") == 1 {print $2}'
}

# my_repeat NAME SECONDS RATE FILE — runs the SQL in FILE (with server-side values only: RAND(),
# NOW()) about RATE times a second for SECONDS over one client session, like pgbench -T -R;
# statements that fail (a deadlock) are reported on stderr and the run goes on; last on stderr:
# how many times FILE was sent.
my_repeat() {
  local name=$1 secs=$2 rate=$3 file=$4
  python3 - "$secs" "$rate" "$file" <<'PY' | my_on "$name" --force >/dev/null
import sys, time
secs, rate, sql = float(sys.argv[1]), float(sys.argv[2]), open(sys.argv[3]).read()
end, n = time.monotonic() + secs, 0
while time.monotonic() < end:
    sys.stdout.write(sql)
    sys.stdout.flush()
    n += 1
    time.sleep(1.0 / rate)
print(n, file=sys.stderr)
PY
}
