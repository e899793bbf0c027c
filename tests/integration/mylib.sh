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

# my_connector NAME SERVER_ID [DATABASE] — the [connector.X] lines of a MariaDB server (user cdc,
# password from a file; database test unless given).
my_connector() {
  local name=$1 sid=$2 db=${3:-test} port="MY_${1}_PORT"
  printf 'cdc-pw\n' >"$WORK/$name.pass"
  chmod 600 "$WORK/$name.pass"
  printf 'type = mysql\nhost = 127.0.0.1\nport = %s\nuser = cdc\npassword_file = %s\ndatabase = %s\nserver_id = %s\n' \
    "${!port}" "$WORK/$name.pass" "$db" "$sid"
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

# my_wide_table NAME TM1 — creates and fills the wide table alltypes (a column of every MySQL type)
# and the keyless nokey on server NAME from tests/fixtures/mysql/wide_table.sql; TM1 is row 1's
# TIME value (negative only where the sink holds it).
my_wide_table() {
  local name=$1 tm1=$2
  sed "s/@TM1@/$tm1/" "$SRCDIR/tests/fixtures/mysql/wide_table.sql" | my_on "$name"
}

# Normal forms of alltypes and nokey rows (SELECT lists): every column wrapped as v:VALUE or null;
# text, bytes and JSON as hex; KINDS_ALL is the comparer's kind of each alltypes column.
MY_ALL="CONCAT_WS(CHAR(9), CONCAT('v:', id), IFNULL(CONCAT('v:', ti), 'null'), IFNULL(CONCAT('v:', tu), 'null'),
  IFNULL(CONCAT('v:', si), 'null'), IFNULL(CONCAT('v:', su), 'null'), IFNULL(CONCAT('v:', mi), 'null'),
  IFNULL(CONCAT('v:', mu), 'null'), IFNULL(CONCAT('v:', i), 'null'), IFNULL(CONCAT('v:', iu), 'null'),
  IFNULL(CONCAT('v:', bi), 'null'), IFNULL(CONCAT('v:', bu), 'null'), IFNULL(CONCAT('v:', de), 'null'),
  IFNULL(CONCAT('v:', fl), 'null'), IFNULL(CONCAT('v:', db), 'null'),
  IFNULL(CONCAT('v:', HEX(CONVERT(ch USING utf8mb4))), 'null'), IFNULL(CONCAT('v:', HEX(CONVERT(vc USING utf8mb4))), 'null'),
  IFNULL(CONCAT('v:', HEX(CONVERT(tx USING utf8mb4))), 'null'), IFNULL(CONCAT('v:', HEX(bl)), 'null'),
  IFNULL(CONCAT('v:', HEX(CONVERT(l1 USING utf8mb4))), 'null'), IFNULL(CONCAT('v:', HEX(CONVERT(l1t USING utf8mb4))), 'null'),
  IFNULL(CONCAT('v:', HEX(bn)), 'null'), IFNULL(CONCAT('v:', HEX(vb)), 'null'),
  IFNULL(CONCAT('v:', d), 'null'), IFNULL(CONCAT('v:', tm), 'null'), IFNULL(CONCAT('v:', dt), 'null'),
  IFNULL(CONCAT('v:', ts), 'null'), IFNULL(CONCAT('v:', yr), 'null'), IFNULL(CONCAT('v:', LPAD(BIN(bt), 10, '0')), 'null'),
  IFNULL(CONCAT('v:', en), 'null'), IFNULL(CONCAT('v:', st), 'null'), IFNULL(CONCAT('v:', HEX(js)), 'null'))"
KINDS_ALL=sssssssssssnrfuuuxuuxxsttttsssj
MY_NOKEY="CONCAT_WS(CHAR(9), IFNULL(CONCAT('v:', a), 'null'), IFNULL(CONCAT('v:', HEX(b)), 'null'))"

# my_to_pg_conf PIPELINE TABLES [LINE...] — $WORK/cdcsync.conf (metrics on $MPORT, log_level info)
# for one pipeline from MariaDB src (connector msrc, server_id 9001) to PostgreSQL dst (connector
# dst, create_tables = yes), test.* mapped to public.*, initial snapshot; each LINE is one more
# line of the pipeline (batch_max_rows = 200).
my_to_pg_conf() {
  local pipeline=$1 tables=$2
  shift 2
  {
    cat <<CONF
[connector.msrc]
$(my_connector src 9001)

[connector.dst]
type = postgres
dsn = $(pg_dsn dst)
create_tables = yes

[pipeline.$pipeline]
source = msrc
sink = dst
tables = $tables
map = test.* -> public.*
snapshot = initial
CONF
    [ $# -eq 0 ] || printf '%s\n' "$@"
  } | write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" info
}
