#!/usr/bin/env bash
# Values arrive exact whatever the servers' settings (#10). One PostgreSQL cluster and one MariaDB
# server, both with the settings users really run with that change how a value is written or
# read — at server, database and role level — and four pipelines through them: PostgreSQL →
# PostgreSQL, PostgreSQL → MySQL, MySQL → PostgreSQL, MySQL → MySQL. The values that expose each
# setting (dates, intervals, doubles, bytea with backslashes and high bytes, money, char(n),
# timetz, arrays with NULL, xml fragments, regclass, TIMESTAMP, CHAR with PAD_CHAR_TO_FULL_LENGTH,
# latin1 and 4-byte UTF-8 text, more rows than sql_select_limit) are copied by the initial
# snapshot and then streamed, and every sink row is compared, value by value, with the source's
# or with the literal it must be. Each mismatch is reported on its own.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/mylib.sh"

# A German locale for lc_monetary, compiled into the test's own directory (no system change):
# the server finds it through LOCPATH.
LOC=$WORK/locales
mkdir -p "$LOC"
localedef -i de_DE -f UTF-8 "$LOC/de_DE.UTF-8" >"$WORK/localedef.log" 2>&1 ||
  [ -d "$LOC/de_DE.UTF-8" ] || fail "localedef de_DE.UTF-8 failed: $(cat "$WORK/localedef.log")"
LOCPATH=$LOC pg_start pg

# MariaDB: the server-wide settings a DBA may have chosen; sql_select_limit and
# group_concat_max_len are session defaults only settable at run time.
MYSQL_EXTRA_CNF=$'sql_mode = PAD_CHAR_TO_FULL_LENGTH,NO_BACKSLASH_ESCAPES,ANSI_QUOTES,ONLY_FULL_GROUP_BY
character_set_server = latin1
collation_server = latin1_swedish_ci
skip-character-set-client-handshake
explicit_defaults_for_timestamp = OFF
default_time_zone = +05:30' my_start my 1
MPORT=$(free_port)

# The test's own sessions pin what they print, so that they read the truth whatever the servers say.
PIN_PG="-c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=1 -c TimeZone=UTC -c bytea_output=hex"
PIN_PG+=" -c lc_monetary=C -c search_path=pg_catalog -c xmloption=content -c array_nulls=on"
pgq() { # DB SQL
  PGOPTIONS=$PIN_PG psql -X -h "$PG_pg_DIR" -p "$PG_pg_PORT" -U postgres -d "$1" -qAt -v ON_ERROR_STOP=1 -c "$2"
}
myq() { # [mariadb args...]
  mariadb --socket="$MY_my_DIR/mysql.sock" -uroot -N -B -r --default-character-set=utf8mb4 \
    --init-command="SET NAMES utf8mb4, time_zone = '+00:00', sql_mode = '', sql_select_limit = 18446744073709551615, group_concat_max_len = 1048576" "$@"
}

# ---- PostgreSQL: cluster, database and role settings ----
pgq postgres "CREATE ROLE cdc LOGIN SUPERUSER REPLICATION"
pgq postgres "CREATE DATABASE src"
pgq postgres "CREATE DATABASE dst"
for s in "DateStyle = 'SQL, DMY'" "IntervalStyle = 'sql_standard'" "extra_float_digits = 0" \
  "TimeZone = 'America/New_York'" "bytea_output = 'escape'"; do
  pgq postgres "ALTER SYSTEM SET $s"
done
pgq postgres "SELECT pg_reload_conf()" >/dev/null
pgq postgres "ALTER DATABASE src SET lc_monetary = 'de_DE.UTF-8'"
pgq postgres "ALTER ROLE cdc SET TimeZone = 'Pacific/Chatham'"
pgq postgres "ALTER ROLE cdc IN DATABASE src SET DateStyle = 'German'"
for s in "DateStyle = 'Postgres, MDY'" "IntervalStyle = 'iso_8601'" "TimeZone = 'Asia/Kolkata'" \
  "xmloption = document" "array_nulls = off" "search_path = shadow" "extra_float_digits = -15"; do
  pgq postgres "ALTER DATABASE dst SET $s"
done
pgq postgres "ALTER ROLE cdc IN DATABASE dst SET standard_conforming_strings = off"

# A sink database holding a decoy: an unqualified 'v' would name shadow.v there.
pgq dst "CREATE SCHEMA shadow; CREATE TABLE shadow.v (id int)"
# A: the values that expose each setting; B: their other edges and NULLs.
pgq src "CREATE TABLE public.v (
  id int PRIMARY KEY, d date, ts timestamp(3), tz timestamptz(3), iv interval, f8 float8, f4 real, by bytea,
  m money, c char(5), t text, arr text[], x xml, rc regclass, tt timetz(3));
INSERT INTO public.v VALUES
  (1, '2001-02-03', '2001-02-03 04:05:06.789', '2001-02-03 04:05:06.789+00', '-3 days -02:00:00',
   0.30000000000000004, 1.2345678, '\\x00ff5c27225c', 1234.56, 'ab',
   E'back\\\\slash ''single'' \"double\" ünï ✓ 🐘', '{x,NULL,\"NULL\"}', 'a<b>c</b>d', 'public.v',
   '04:05:06.789+02'),
  (2, '1999-12-31', '1999-12-31 23:59:59.999', '1999-12-31 23:59:59.999-05', '1 year -2 mons +3 days -04:05:06.5',
   1.0000000000000002, NULL, '\\x5c', -0.01, ' a', '', NULL, NULL, 'pg_class', '23:59:59.999-14:59');"

# ---- MariaDB ----
myq -e "SET GLOBAL sql_select_limit = 3, group_concat_max_len = 4"
myq -e "CREATE DATABASE test_src; CREATE DATABASE test_dst; CREATE DATABASE test_dst2"
# A: the values; B: the other edges (a NULL TIMESTAMP: explicit_defaults_for_timestamp = OFF
# would make a created column NOT NULL, auto-set to the current time).
myq test_src <<'SQL'
CREATE TABLE m (id INT PRIMARY KEY, c CHAR(5), ts TIMESTAMP(6) NULL DEFAULT NULL, dt DATETIME(6), d DATE,
  f DOUBLE, bl BLOB, t VARCHAR(100) CHARACTER SET utf8mb4, l VARCHAR(20) CHARACTER SET latin1);
INSERT INTO m VALUES
  (1, 'ab', '2001-02-03 04:05:06.789', '2001-02-03 04:05:06.789', '2001-02-03', 0.1e0 + 0.2e0, X'00FF5C27225C',
   'back\\slash ''single'' "double" ünï ✓ 🐘', 'ümlaut'),
  (2, ' a', NULL, '1000-01-01 00:00:00', '9999-12-31', 2.5, X'', '', NULL);
INSERT INTO m SELECT id + 2, c, ts, dt, d, f, bl, t, l FROM m;
INSERT INTO m SELECT 5, c, ts, dt, d, f, bl, t, l FROM m WHERE id = 1;
SQL

# The source's dsn brings options of its own (the user's): cdcsync's pins come after them and win.
pg_conn() {
  local opts=""
  [ "$1" = src ] && opts=" options='-c DateStyle=SQL,DMY -c work_mem=8MB'"
  printf "type = postgres\ndsn = host=127.0.0.1 port=%s user=cdc dbname=%s%s\n" "$PG_pg_PORT" "$1" "$opts"
}
my_conn() {
  printf 'cdc-pw\n' >"$WORK/my.pass"
  chmod 600 "$WORK/my.pass"
  printf 'type = mysql\nhost = 127.0.0.1\nport = %s\nuser = cdc\npassword_file = %s\ndatabase = %s\nserver_id = %s\n' \
    "$MY_my_PORT" "$WORK/my.pass" "$1" "$2"
}
write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" info <<CONF
[connector.pg_src]
$(pg_conn src)

[connector.pg_dst]
$(pg_conn dst)
create_tables = yes

[connector.my_src1]
$(my_conn test_src 9101)

[connector.my_src2]
$(my_conn test_src 9102)

[connector.my_dst]
$(my_conn test_dst 9103)
create_tables = yes

[pipeline.pp]
source = pg_src
sink = pg_dst
tables = public.v

[pipeline.pm]
source = pg_src
sink = my_dst
tables = public.v
map = public.* -> test_dst.*

[pipeline.mp]
source = my_src1
sink = pg_dst
tables = test_src.m
map = test_src.* -> public.*

[pipeline.mm]
source = my_src2
sink = my_dst
tables = test_src.m
map = test_src.* -> test_dst2.*
CONF

# ---- what each sink must hold ----
T_HEX=$(printf '%s' "back\\slash 'single' \"double\" ünï ✓ 🐘" | od -An -tx1 | tr -d ' \n' | tr a-f A-F)
# PostgreSQL → MySQL, per row kind (id first)
PM_A="2001-02-03|2001-02-03 04:05:06.789000|2001-02-03 04:05:06.789000|-3 days -02:00:00|0.30000000000000004|1.2345677614212036|00FF5C27225C|\$1,234.56|[ab]|$T_HEX|{x,NULL,\"NULL\"}|a<b>c</b>d|public.v|04:05:06.789+02"
PM_B="1999-12-31|1999-12-31 23:59:59.999000|2000-01-01 04:59:59.999000|10 mons 3 days -04:05:06.5|1.0000000000000002|null|5C|-\$0.01|[ a]||null|null|pg_class|23:59:59.999-14:59"
PM_SQL="SELECT CONCAT_WS('|', id, IFNULL(d, 'null'), IFNULL(ts, 'null'), IFNULL(tz, 'null'), IFNULL(iv, 'null'),
  IFNULL(f8, 'null'), IFNULL(CAST(f4 AS DOUBLE), 'null'), IFNULL(HEX(\`by\`), 'null'), IFNULL(m, 'null'),
  IFNULL(CONCAT('[', c, ']'), 'null'), IFNULL(HEX(t), 'null'), IFNULL(arr, 'null'), IFNULL(x, 'null'),
  IFNULL(rc, 'null'), IFNULL(tt, 'null')) FROM test_dst.v ORDER BY id"
# MySQL → PostgreSQL
MP_A="[ab]|2001-02-03 04:05:06.789+00|2001-02-03 04:05:06.789|2001-02-03|0.30000000000000004|\\x00ff5c27225c|back\\slash 'single' \"double\" ünï ✓ 🐘|ümlaut"
MP_B="[ a]|null|1000-01-01 00:00:00|9999-12-31|2.5|\\x||null"
MP_SQL="SELECT concat_ws('|', id, coalesce('[' || c || ']', 'null'), coalesce(ts::text, 'null'), coalesce(dt::text, 'null'),
  coalesce(d::text, 'null'), coalesce(f::text, 'null'), coalesce(bl::text, 'null'), coalesce(t, 'null'), coalesce(l, 'null'))
  FROM public.m ORDER BY id"
# MySQL → MySQL: the same normal form on both sides
MM_SQL() {
  printf "SELECT CONCAT_WS('|', id, IFNULL(HEX(c), 'null'), IFNULL(ts, 'null'), IFNULL(dt, 'null'), IFNULL(d, 'null'),
  IFNULL(f, 'null'), IFNULL(HEX(bl), 'null'), IFNULL(HEX(t), 'null'), IFNULL(HEX(CONVERT(l USING utf8mb4)), 'null'))
  FROM %s.m ORDER BY id" "$1"
}

# expected ROWSPEC: "1:A 2:B ..." → one line per row with the kind's text
expected() {
  local a=$1 b=$2
  shift 2
  local r
  for r in "$@"; do
    case ${r#*:} in A) printf '%s|%s\n' "${r%%:*}" "$a" ;; B) printf '%s|%s\n' "${r%%:*}" "$b" ;; esac
  done
}

PG_ROWS=(1:A 2:B)
MY_ROWS=(1:A 2:B 3:A 4:B 5:A)
# Every check runs and reports; non-zero when any value differs.
check_all() {
  local bad=0 got want
  # PostgreSQL → PostgreSQL: the whole rows as the source has them, and the exposing values.
  got=$(pgq dst "SELECT v::text FROM public.v ORDER BY id" 2>&1) || true
  want=$(pgq src "SELECT v::text FROM public.v ORDER BY id")
  [ "$got" = "$want" ] || { echo "pp: public.v on the sink is"; echo "$got"; echo "pp: but the source has"; echo "$want"; bad=1; }
  got=$(pgq dst "SELECT d, iv, f8, by, m, c, arr, x, rc FROM public.v WHERE id = 1" 2>&1) || true
  want='2001-02-03|-3 days -02:00:00|0.30000000000000004|\x00ff5c27225c|$1,234.56|ab   |{x,NULL,"NULL"}|a<b>c</b>d|public.v'
  [ "$got" = "$want" ] || { echo "pp: row 1 is '$got', want '$want'"; bad=1; }
  # PostgreSQL → MySQL
  got=$(myq -e "$PM_SQL" 2>&1) || true
  want=$(expected "$PM_A" "$PM_B" "${PG_ROWS[@]}")
  [ "$got" = "$want" ] || { echo "pm: test_dst.v is"; echo "$got"; echo "pm: want"; echo "$want"; bad=1; }
  got=$(myq -e "SELECT GROUP_CONCAT(CONCAT(COLUMN_NAME, ' ', COLUMN_TYPE) ORDER BY COLUMN_NAME) FROM
    information_schema.COLUMNS WHERE TABLE_SCHEMA = 'test_dst' AND TABLE_NAME = 'v' AND COLUMN_NAME IN ('c', 'tt')" 2>&1) || true
  [ "$got" = "c char(5),tt varchar(32)" ] || { echo "pm: char(5) and timetz columns are '$got', want 'c char(5),tt varchar(32)'"; bad=1; }
  # MySQL → PostgreSQL
  got=$(pgq dst "$MP_SQL" 2>&1) || true
  want=$(expected "$MP_A" "$MP_B" "${MY_ROWS[@]}")
  [ "$got" = "$want" ] || { echo "mp: public.m is"; echo "$got"; echo "mp: want"; echo "$want"; bad=1; }
  # MySQL → MySQL
  got=$(myq -e "$(MM_SQL test_dst2)" 2>&1) || true
  want=$(myq -e "$(MM_SQL test_src)")
  [ "$got" = "$want" ] || { echo "mm: test_dst2.m is"; echo "$got"; echo "mm: but the source has"; echo "$want"; bad=1; }
  return $bad
}

report_wait() { # DESCRIPTION: like wait_for, but the whole last report goes to the log
  local deadline=$((SECONDS + ${VALUES_WAIT_S:-90}))
  until check_all >"$WORK/check_all.out" 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      log "values that differ:"
      cat "$WORK/check_all.out" >&2
      grep -E 'ERROR|error' "$WORK/service.log" | sort | uniq -c | sort -rn | head -20 >&2 || true
      fail "$1: values differ"
    fi
    kill -0 "$SERVICE_PID" 2>/dev/null || fail "the service exited during: $1"
    sleep 0.5
  done
  log "$1: every value exact"
}

"$CDCSYNC" -c "$WORK/cdcsync.conf" check >"$WORK/check.out" 2>&1 || fail "check failed: $(cat "$WORK/check.out")"
service_start
report_wait "initial snapshot"

# Streaming: new rows of both kinds, and a row changed from one kind to the other.
pgq src "INSERT INTO public.v SELECT id + 10, d, ts, tz, iv, f8, f4, by, m, c, t, arr, x, rc, tt FROM public.v;
  UPDATE public.v SET (d, ts, tz, iv, f8, f4, by, m, c, t, arr, x, rc, tt) =
    (SELECT d, ts, tz, iv, f8, f4, by, m, c, t, arr, x, rc, tt FROM public.v WHERE id = 1) WHERE id = 12"
myq test_src -e "INSERT INTO m SELECT id + 5, c, ts, dt, d, f, bl, t, l FROM m WHERE id <= 2;
  UPDATE m a JOIN m b ON b.id = 1 SET a.c = b.c, a.ts = b.ts, a.dt = b.dt, a.d = b.d, a.f = b.f, a.bl = b.bl,
    a.t = b.t, a.l = b.l WHERE a.id = 4"
PG_ROWS=(1:A 2:B 11:A 12:A)
MY_ROWS=(1:A 2:B 3:A 4:A 5:A 6:A 7:B)
report_wait "streaming"

service_stop

# A connection whose pins do not hold (a pooler or proxy that drops the startup parameter
# "options", like PgBouncer with ignore_startup_parameters = options) is refused, naming the
# setting, before any value is read.
PROXY_PORT=$(free_port)
python3 - "$PROXY_PORT" "$PG_pg_PORT" >"$WORK/proxy.log" 2>&1 <<'PY' &
import signal, socket, struct, sys, threading
signal.alarm(120)  # never outlives the test
listen_port, target_port = int(sys.argv[1]), int(sys.argv[2])

def recvn(s, n):
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            raise EOFError
        buf += d
    return buf

def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

def handle(c):
    try:
        while True:
            body = recvn(c, struct.unpack("!I", recvn(c, 4))[0] - 4)
            if struct.unpack("!I", body[:4])[0] in (80877103, 80877104):  # SSL, GSSENC request
                c.sendall(b"N")
                continue
            break
        kv = body[4:].split(b"\0")[:-2]
        out = []
        for k, v in zip(kv[0::2], kv[1::2]):
            if k != b"options":
                out += [k, v]
        body = body[:4] + b"\0".join(out) + b"\0\0"
        s = socket.create_connection(("127.0.0.1", target_port))
        s.sendall(struct.pack("!I", len(body) + 4) + body)
        threading.Thread(target=pipe, args=(s, c), daemon=True).start()
        pipe(c, s)
    except (OSError, EOFError):
        c.close()

srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", listen_port))
srv.listen(16)
print("ready", flush=True)
while True:
    threading.Thread(target=handle, args=(srv.accept()[0],), daemon=True).start()
PY
PROXY_PID=$!
wait_for "the options-dropping proxy" 10 grep -q ready "$WORK/proxy.log"
sed -e "/^\[connector.pg_src\]/,/^\[/ s/port=$PG_pg_PORT /port=$PROXY_PORT /" "$WORK/cdcsync.conf" >"$WORK/proxy.conf"
chmod 600 "$WORK/proxy.conf"
grep -q "port=$PROXY_PORT" "$WORK/proxy.conf" || fail "proxy.conf does not go through the proxy"
rc=0
"$CDCSYNC" -c "$WORK/proxy.conf" check --connect >"$WORK/proxy-check.out" 2>&1 || rc=$?
kill "$PROXY_PID" 2>/dev/null || true
wait "$PROXY_PID" 2>/dev/null || true
[ "$rc" != 0 ] || { cat "$WORK/proxy-check.out" >&2; fail "check --connect passed through a proxy that drops the settings"; }
assert_grep "connector pg_src: the session setting DateStyle is 'German, DMY', not 'ISO, YMD' as cdcsync asked" \
  "$WORK/proxy-check.out"
log "through an options-dropping proxy: $(grep -o "the session setting DateStyle[^:]*" "$WORK/proxy-check.out" | head -1)"
finish
