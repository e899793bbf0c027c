#!/usr/bin/env bash
# PostgreSQL → MySQL through the service: initial snapshot, then a mixed workload (multi-statement
# transactions, key updates, deletes, truncate, NULLs) over a table holding every PostgreSQL type
# of issue #4 and a table without key; create_tables = yes on the MariaDB sink. Both sides must
# end with equal ordered contents (compare_rows.py on per-type normal forms). Last, a NaN and a
# numeric beyond DECIMAL(65,30) stop the pipeline with an error naming table, key and column,
# counted as cdcsync_errors_total{kind="data"}.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/mylib.sh"
export PGTZ=UTC

pg_start src
my_start dst 2
MPORT=$(free_port)

psql_on src <<'SQL'
CREATE TABLE pgall (
  id int PRIMARY KEY, b boolean, s smallint, i integer, bi bigint, n numeric, n2 numeric(12,3),
  r real, d double precision, t text, vc varchar(40), by bytea, da date, tm time, ts timestamp(6),
  tz timestamptz, u uuid, j json, jb jsonb, arr int[], tarr text[]);
CREATE TABLE nokey (a int, b text);
ALTER TABLE nokey REPLICA IDENTITY FULL;
CREATE TABLE bad_nan (id int PRIMARY KEY, d double precision);
CREATE TABLE bad_num (id int PRIMARY KEY, n numeric);
INSERT INTO pgall VALUES
  (1, true, -32768, -2147483648, -9223372036854775808, 12345678901234567890123456789012345.123456789012345678901234567890,
   -123456789.123, 1.5, 3.141592653589793, E'tab\there\nnewline \\ backslash ünï ✓ 🐘', 'varchar',
   '\x00ff10'::bytea, '2024-02-29', '23:59:59.999999', '1999-12-31 23:59:59.999999',
   '2038-01-19 03:14:07.5+02', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2, null]}',
   '{"b": {"c": "d"}, "e": 1.5}', '{1,2,3}', '{"x y",NULL,"z"}'),
  (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL),
  (3, false, 0, 0, 0, 0, 0, 0, 0, '', '', '', '1000-01-01', '00:00:00', '1000-01-01 00:00:00',
   '1970-01-01 00:00:01+00', '00000000-0000-0000-0000-000000000000', '[]', '{}', '{}', '{}');
INSERT INTO nokey VALUES (1, 'one'), (1, 'one'), (2, NULL);
SQL

write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" info <<CONF
[connector.psrc]
type = postgres
dsn = $(pg_dsn src)

[connector.mdst]
$(my_connector dst 9002)
create_tables = yes

[pipeline.p2m]
source = psrc
sink = mdst
tables = public.pgall, public.nokey
map = public.* -> test.*
snapshot = initial

; one pipeline per unrepresentable value: a refused change stops its pipeline for good
[pipeline.bad_nan]
source = psrc
sink = mdst
tables = public.bad_nan
map = public.* -> test.*

[pipeline.bad_num]
source = psrc
sink = mdst
tables = public.bad_num
map = public.* -> test.*
CONF

w() { printf "coalesce('v:' || (%s), 'null')" "$1"; }
m() { printf "IFNULL(CONCAT('v:', %s), 'null')" "$1"; }
PG_ALL="concat_ws(E'\t', $(w id), $(w b::int), $(w s), $(w i), $(w bi), $(w n), $(w n2), $(w r), $(w d),
  $(w "encode(convert_to(t, 'UTF8'), 'hex')"), $(w "encode(convert_to(vc, 'UTF8'), 'hex')"), $(w "encode(by, 'hex')"),
  $(w da), $(w tm), $(w ts), $(w "tz AT TIME ZONE 'UTC'"), $(w u), $(w "encode(convert_to(j::text, 'UTF8'), 'hex')"),
  $(w "encode(convert_to(jb::text, 'UTF8'), 'hex')"), $(w "encode(convert_to(arr::text, 'UTF8'), 'hex')"),
  $(w "encode(convert_to(tarr::text, 'UTF8'), 'hex')"))"
MY_ALL="CONCAT_WS(CHAR(9), $(m id), $(m b), $(m s), $(m i), $(m bi), $(m n), $(m n2), $(m r), $(m d),
  $(m "HEX(t)"), $(m "HEX(vc)"), $(m "HEX(\`by\`)"), $(m da), $(m tm), $(m ts), $(m tz), $(m u), $(m "HEX(j)"),
  $(m "HEX(jb)"), $(m "HEX(arr)"), $(m "HEX(tarr)"))"
KINDS_ALL=sssssnnrfuuxstttsjjuu
PG_NOKEY="concat_ws(E'\t', $(w a), $(w "encode(convert_to(b, 'UTF8'), 'hex')"))"
MY_NOKEY="CONCAT_WS(CHAR(9), $(m a), $(m "HEX(b)"))"

dump_pair() { # TABLE MYEXPR PGEXPR ORDER
  my_on dst -e "SELECT $2 FROM $1 ORDER BY $4" >"$WORK/my.$1" &&
    psql_on src -F $'\t' -c "SELECT $3 FROM public.$1 ORDER BY $4" >"$WORK/pg.$1"
}
synced() {
  dump_pair pgall "$MY_ALL" "$PG_ALL" id && rows_equal "$KINDS_ALL" "$WORK/pg.pgall" "$WORK/my.pgall" &&
    dump_pair nokey "$MY_NOKEY" "$PG_NOKEY" "a, b" && rows_equal su "$WORK/pg.nokey" "$WORK/my.nokey"
}

"$CDCSYNC" -c "$WORK/cdcsync.conf" check >"$WORK/check.out" || fail "check failed: $(cat "$WORK/check.out")"
service_start
wait_for "initial snapshot equal" 60 synced
log "initial snapshot equal: $(tr '\n' ' ' <"$WORK/wait.out")"

psql_on src <<'SQL'
BEGIN;
INSERT INTO pgall (id, t, n, ts, jb) VALUES (10, 'new', 0.000000000000000000000000000001, '2024-06-01 12:00:00.000001', '"s"');
UPDATE pgall SET vc = vc || ' upd', i = i + 1, r = -2.25 WHERE id = 1;
DELETE FROM pgall WHERE id = 3;
INSERT INTO nokey VALUES (3, 'three');
COMMIT;
UPDATE pgall SET id = 20 WHERE id = 10;
UPDATE pgall SET b = NULL, by = NULL, jb = NULL, tz = NULL, arr = NULL WHERE id = 1;
UPDATE pgall SET b = true, by = '', tz = '2024-03-10 02:30:00-07', arr = '{-1}', n = -0.5 WHERE id = 2;
DELETE FROM nokey WHERE ctid = (SELECT min(ctid) FROM nokey WHERE a = 1);
UPDATE nokey SET b = 'was null' WHERE a = 2;
INSERT INTO pgall (id, i, t, ts) SELECT g + 100, g, 'row ' || g, '2024-01-01'::timestamp + g * interval '1 second' FROM generate_series(1, 300) g;
BEGIN;
UPDATE pgall SET i = -i WHERE id BETWEEN 150 AND 160;
DELETE FROM pgall WHERE id > 390;
COMMIT;
TRUNCATE nokey;
INSERT INTO nokey VALUES (5, 'after truncate'), (5, 'after truncate');
SQL
wait_for "workload equal" 60 synced
log "workload equal: $(tr '\n' ' ' <"$WORK/wait.out")"

# A value MySQL cannot hold stops its pipeline with the table, key and column, counted in
# metrics; nothing of its transaction reaches MySQL.
psql_on src -c "BEGIN; INSERT INTO bad_nan VALUES (1, 1.5), (500, 'NaN'); COMMIT;
  INSERT INTO bad_num VALUES (7, 12.5), (501, 1e40); UPDATE bad_num SET n = 2 WHERE id = 7;"
stopped() {
  grep -q "bad_nan column d (float) cannot be stored in MySQL.*(row key (id)=(500))" "$WORK/service.log" &&
    grep -q "bad_num column n (numeric) cannot be stored in MySQL.*beyond DECIMAL(65,30).*(row key (id)=(501))" "$WORK/service.log"
}
wait_for "NaN and 1e40 stop their pipelines" 30 stopped
log "refused: $(grep -o "value '[^ ]*' of .*" "$WORK/service.log" | tr '\n' ' ')"
data_errors() {
  [ "$(metric 'cdcsync_errors_total{pipeline="bad_nan",kind="data"}')" -ge 1 ] &&
    [ "$(metric 'cdcsync_errors_total{pipeline="bad_num",kind="data"}')" -ge 1 ]
}
wait_for "the data errors in the metrics" 10 data_errors
[ "$(my_on dst -e "SELECT count(*) FROM bad_nan WHERE id IN (1, 500)")" = 0 ] || fail "part of the NaN transaction reached MySQL"
[ "$(my_on dst -e "SELECT count(*) FROM bad_num WHERE id IN (7, 501)")" = 0 ] || fail "part of the 1e40 transaction reached MySQL"
# the main pipeline keeps streaming
psql_on src -c "UPDATE pgall SET t = 'still streaming' WHERE id = 1"
wait_for "the main pipeline still streams" 30 synced
service_stop
finish
