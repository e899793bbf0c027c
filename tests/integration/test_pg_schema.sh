#!/usr/bin/env bash
# Schema corner cases of a PostgreSQL source (issue #10), against one PostgreSQL source, one
# PostgreSQL sink and one MariaDB, several databases and pipelines in one service:
# - user-defined types (domains, of domains, enums, composites, ranges, multiranges, arrays of
#   them, in another schema too) are created on a PostgreSQL sink with create_tables, in
#   dependency order; a same-named type that differs, or an extension's type, stops the pipeline
#   naming table, column and type (kind "schema") until fixed; into MariaDB a domain is its base
#   type, the others text;
# - tables of no column (empty, or every column dropped) with rows are copied and streamed
#   (inserts, deletes); into MariaDB they are a clear error;
# - numeric(3,-6) and numeric(3,5) are created as they are, and as exact DECIMALs in MariaDB;
# - generated columns are created as generated (same expression) and never written; MariaDB
#   gets the other columns and a warning naming them;
# - a source table dropped and created again with other columns while streaming: re-created on
#   the sink (PostgreSQL and MariaDB), or, without create_tables, a "schema" error until the
#   operator empties the target;
# - when the sink's origin slots run out, the error and `check --connect` name the origins of
#   pipelines no longer in the conf and the SQL that drops them.
# Values are compared, not counts.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/mylib.sh"
export PGTZ=UTC

pg_start src
pg_start dst
my_start my 7
MPORT=$(free_port)

dsn() { # CLUSTER DB
  local port="PG_${1}_PORT"
  printf 'host=127.0.0.1 port=%s user=postgres dbname=%s' "${!port}" "$2"
}
psql_db() { # CLUSTER DB [psql args...]
  local name=$1 db=$2
  shift 2
  local dir="PG_${name}_DIR" port="PG_${name}_PORT"
  psql -X -h "${!dir}" -p "${!port}" -U postgres -d "$db" -qAt -v ON_ERROR_STOP=1 "$@"
}
# Ordered contents of every listed table, as text, on both clusters: equal?
pg_equal() { # DB TABLE...
  local db=$1 t a b
  shift
  for t in "$@"; do
    a=$(psql_db src "$db" -c "SELECT t::text FROM $t t ORDER BY t::text COLLATE \"C\"") || return 1
    b=$(psql_db dst "$db" -c "SELECT t::text FROM $t t ORDER BY t::text COLLATE \"C\"") || return 1
    [ "$a" = "$b" ] || { printf '%s differs in %s:\nsource:\n%s\nsink:\n%s\n' "$t" "$db" "$a" "$b"; return 1; }
  done
}

for db in kinds clash rc; do psql_on src -c "CREATE DATABASE $db"; done
for db in kinds clash rc rc2; do psql_on dst -c "CREATE DATABASE $db"; done

psql_db src kinds <<'SQL'
CREATE SCHEMA s2;
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE DOMAIN small_pos AS posint CHECK (VALUE < 1000000);
CREATE DOMAIN money2 AS numeric(10,2) NOT NULL DEFAULT 0;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy, really', 'it''s');
CREATE TYPE s2.color AS ENUM ('red', 'green');
CREATE TYPE pair AS (a int, b text COLLATE "C", c s2.color);
CREATE TYPE moodpair AS (m mood, d posint, p pair[]);
CREATE TYPE floatrange AS RANGE (subtype = float8, subtype_diff = float8mi);
CREATE TABLE typed (id posint PRIMARY KEY, m mood, p pair, r floatrange, ma mood[], mp moodpair, c s2.color,
  amt money2, sp small_pos, fr floatmultirange);
INSERT INTO typed VALUES
  (1, 'happy, really', '(1,"x y",red)', '[1.5,2.5)', '{sad,it''s}', '(ok,7,"{""(2,z,green)""}")', 'green', 12.34, 5,
   '{[1,2),[3,4)}'),
  (2, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL);
CREATE TABLE z0 ();
INSERT INTO z0 DEFAULT VALUES; INSERT INTO z0 DEFAULT VALUES; INSERT INTO z0 DEFAULT VALUES;
CREATE TABLE zd (a int, b text);
INSERT INTO zd VALUES (1, 'x'), (2, 'y');
ALTER TABLE zd DROP COLUMN a, DROP COLUMN b;
CREATE TABLE negscale (id int PRIMARY KEY, n numeric(3,-6), m numeric(3,5));
INSERT INTO negscale VALUES (1, 123456789, 0.001234), (2, -999000000, -0.00999), (3, NULL, 0);
CREATE TABLE gen (id int PRIMARY KEY, a int, g int GENERATED ALWAYS AS (a * 2) STORED, t text,
  g2 text GENERATED ALWAYS AS (upper(t) || '!') STORED);
INSERT INTO gen (id, a, t) VALUES (1, 21, 'abc'), (2, NULL, NULL);
SQL

# The sink has a type of the same name but other labels; the source a type of an extension.
psql_db src clash -c "CREATE EXTENSION citext; CREATE TYPE mood AS ENUM ('sad', 'ok');
  CREATE TABLE a_ext (id int PRIMARY KEY, e citext); INSERT INTO a_ext VALUES (1, 'MiXeD');
  CREATE TABLE b_enum (id int PRIMARY KEY, m mood); INSERT INTO b_enum VALUES (1, 'ok'), (2, 'sad');"
psql_db dst clash -c "CREATE TYPE mood AS ENUM ('sad', 'happy')"

psql_db src rc -c "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 10), (2, 20);"
psql_db dst rc2 -c "CREATE TABLE t (id int PRIMARY KEY, v int)"

write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" <<CONF
[connector.skinds]
type = postgres
dsn = $(dsn src kinds)
[connector.sclash]
type = postgres
dsn = $(dsn src clash)
[connector.src_rc]
type = postgres
dsn = $(dsn src rc)

[connector.dkinds]
type = postgres
dsn = $(dsn dst kinds)
create_tables = yes
[connector.dclash]
type = postgres
dsn = $(dsn dst clash)
create_tables = yes
[connector.drc]
type = postgres
dsn = $(dsn dst rc)
create_tables = yes
[connector.drc2]
type = postgres
dsn = $(dsn dst rc2)

[connector.my]
$(my_connector my 9007)
create_tables = yes

[pipeline.kinds]
source = skinds
sink = dkinds
tables = *

[pipeline.kinds_my]
source = skinds
sink = my
tables = public.typed, public.negscale, public.gen
map = public.* -> test.*

[pipeline.zero_my]
source = skinds
sink = my
tables = public.z0
map = public.* -> test.*

[pipeline.clash]
source = sclash
sink = dclash
tables = *

[pipeline.rc_pg]
source = src_rc
sink = drc
tables = *

[pipeline.rc_keep]
source = src_rc
sink = drc2
tables = *

[pipeline.rc_my]
source = src_rc
sink = my
tables = *
map = public.* -> test.*
CONF
service_start

# ---- a type the sink lacks (an extension's), then a type that differs: stop, fixed, go on ----
# (first: the pipeline retries with a backoff that doubles from the start of the service)
ext_refused() { grep -q "column e of source table public.a_ext has type public.citext, which the sink database lacks and cdcsync cannot create: it belongs to extension citext: run CREATE EXTENSION citext in the sink database" "$WORK/service.log"; }
wait_for "the extension's type named" 30 ext_refused
psql_db dst clash -c "CREATE EXTENSION citext"
differs() { grep -q "type public.mood, which column m of source table public.b_enum needs, exists in the sink database but differs from the source's — source: CREATE TYPE public.mood AS ENUM ('sad', 'ok'); sink: CREATE TYPE public.mood AS ENUM ('sad', 'happy')" "$WORK/service.log"; }
wait_for "the differing type named" 60 differs
schema_errors() { [ "$(metric 'cdcsync_errors_total{pipeline="clash",kind="schema"}')" -ge 2 ]; }
wait_for "both counted as schema errors" 10 schema_errors
psql_db dst clash -c "ALTER TYPE mood RENAME VALUE 'happy' TO 'ok'"
wait_for "the clash pipeline copies once fixed" 60 pg_equal clash a_ext b_enum
log "a type the sink lacks or holds differently: named, counted as schema, and the pipeline goes on once fixed"

# ---- user-defined types, tables of no column, negative scales, generated columns: PG -> PG ----
KINDS="typed z0 zd negscale gen"
wait_for "the kinds copied" 60 pg_equal kinds $KINDS
[ "$(psql_db dst kinds -c "SELECT count(*) FROM z0")" = 3 ] || fail "z0 lost rows"
psql_db src kinds <<'SQL'
INSERT INTO typed VALUES (3, 'sad', '(2,b,green)', 'empty', '{}', NULL, 'red', 0.5, 7, '{}');
UPDATE typed SET m = 'ok', p = '(3,"c d",)', mp = '(sad,1,{})' WHERE id = 1;
INSERT INTO z0 DEFAULT VALUES;
ALTER TABLE z0 REPLICA IDENTITY FULL;
DELETE FROM z0 WHERE ctid IN (SELECT ctid FROM z0 LIMIT 2);
INSERT INTO zd DEFAULT VALUES;
INSERT INTO negscale VALUES (4, 5e8, 0.00001);
INSERT INTO gen (id, a, t) VALUES (3, 5, 'x');
UPDATE gen SET a = 100, t = 'new' WHERE id = 1;
CREATE TYPE late AS ENUM ('a', 'b');
CREATE TABLE later (id int PRIMARY KEY, l late, ls late[]);
INSERT INTO later VALUES (1, 'b', '{a,b}');
SQL
wait_for "the kinds streamed" 60 pg_equal kinds $KINDS later
[ "$(psql_db dst kinds -c "SELECT count(*) FROM z0")" = 2 ] || fail "z0 should hold 2 rows"
# created as they are at the source
for col in "typed id public.posint" "typed mp public.moodpair" "typed c s2.color" "typed fr public.floatmultirange" \
  "negscale n numeric(3,-6)" "negscale m numeric(3,5)" "later ls public.late[]"; do
  set -- $col
  got=$(psql_db dst kinds -c "SET search_path = ''; SELECT format_type(atttypid, atttypmod) FROM pg_attribute
    WHERE attrelid = 'public.$1'::regclass AND attname = '$2'")
  [ "$got" = "$3" ] || fail "sink column $1.$2 is $got, not $3"
done
gen_def() { psql_db "$1" kinds -c "SELECT string_agg(attname || ' ' || attgenerated::text || ' ' ||
  coalesce(pg_get_expr(adbin, adrelid), ''), ', ' ORDER BY attnum) FROM pg_attribute LEFT JOIN pg_attrdef ON
  adrelid = attrelid AND adnum = attnum WHERE attrelid = 'public.gen'::regclass AND attnum > 0"; }
want="id  , a  , g s (a * 2), t  , g2 s (upper(t) || '!'::text)"
[ "$(gen_def src)" = "$want" ] || fail "the source's generated columns: $(gen_def src)"
[ "$(gen_def dst)" = "$want" ] || fail "the sink's generated columns: $(gen_def dst)"
grep -q "created type public.moodpair, which column mp of source table public.typed needs" "$WORK/service.log" ||
  fail "type creation not logged"
log "PG -> PG: user-defined types, tables of no column, negative scales and generated columns copied and streamed"

# ---- the same into MariaDB ----
m() { printf "IFNULL(CONCAT('v:', %s), 'null')" "$1"; }
w() { printf "coalesce('v:' || (%s)::text, 'null')" "$1"; }
my_pair() { # TABLE COLS...
  local t=$1 pgx="" myx="" c
  shift
  for c in "$@"; do
    pgx="$pgx${pgx:+, }$(w "$c")"
    myx="$myx${myx:+, }$(m "$c")"
  done
  my_on my -e "SELECT CONCAT_WS('|', $myx) FROM $t ORDER BY id" >"$WORK/my.$t" &&
    psql_db src kinds -c "SELECT concat_ws('|', $pgx) FROM public.$t ORDER BY id" >"$WORK/pg.$t" &&
    cmp -s "$WORK/my.$t" "$WORK/pg.$t" || { diff "$WORK/pg.$t" "$WORK/my.$t"; return 1; }
}
my_synced() {
  my_pair typed id m p r ma mp c amt sp fr && my_pair negscale id n m && my_pair gen id a t
}
wait_for "the kinds equal in MariaDB" 60 my_synced
coltypes=$(my_on my -e "SELECT GROUP_CONCAT(CONCAT(TABLE_NAME, '.', COLUMN_NAME, ' ', COLUMN_TYPE) ORDER BY TABLE_NAME,
  ORDINAL_POSITION SEPARATOR ', ') FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'test' AND
  TABLE_NAME IN ('typed', 'negscale', 'gen')")
want="gen.id int(11), gen.a int(11), gen.t longtext, negscale.id int(11), negscale.n decimal(9,0), negscale.m decimal(5,5), typed.id int(11), typed.m longtext, typed.p longtext, typed.r longtext, typed.ma longtext, typed.mp longtext, typed.c longtext, typed.amt decimal(10,2), typed.sp int(11), typed.fr longtext"
[ "$coltypes" = "$want" ] || fail "MariaDB columns: $coltypes"
assert_grep "created \`test\`.\`gen\` without generated column g2 of source table public.gen (GENERATED ALWAYS AS ((upper(t) || '!'::text)) STORED in PostgreSQL)" "$WORK/service.log"
zero_refused() { grep -q "source table public.z0 has no column, and a MySQL/MariaDB table cannot be without one — leave it out of tables of pipeline zero_my" "$WORK/service.log"; }
wait_for "a table of no column refused by MariaDB, by name" 30 zero_refused
grep -qi "syntax" "$WORK/service.log" && fail "an SQL syntax error in the log"
log "PG -> MariaDB: domains as their base types, others as text, exact DECIMALs, generated columns left out with a warning, a table of no column refused by name"

# ---- a source table dropped and created again with other columns while streaming ----
wait_for "rc copied (PostgreSQL)" 60 pg_equal rc t
rc_my() {
  my_on my -e "SELECT CONCAT_WS('|', $(m id), $(m v)$([ "${1:-}" ] && echo ", $(m d)")) FROM t ORDER BY id" >"$WORK/my.t" &&
    psql_db src rc -c "SELECT concat_ws('|', $(w id), $(w v)$([ "${1:-}" ] && echo ", $(w d)")) FROM t ORDER BY id" >"$WORK/pg.t" &&
    cmp -s "$WORK/my.t" "$WORK/pg.t" || { diff "$WORK/pg.t" "$WORK/my.t"; return 1; }
}
wait_for "rc copied (MariaDB)" 60 rc_my
rc2_old() { [ "$(psql_db dst rc2 -c "SELECT string_agg(t::text, ' ' ORDER BY id) FROM t")" = "(1,10) (2,20)" ]; }
wait_for "rc copied (into the existing table)" 60 rc2_old
psql_db src rc <<'SQL'
BEGIN;
UPDATE t SET v = 11 WHERE id = 1;
DROP TABLE t;
CREATE TABLE t (id text PRIMARY KEY, v numeric(10,2), d date);
INSERT INTO t VALUES ('a', 1.5, '2020-01-01');
COMMIT;
INSERT INTO t VALUES ('b', 2.25, NULL);
SQL
wait_for "t re-created on the PostgreSQL sink" 60 pg_equal rc t
wait_for "t re-created in MariaDB" 60 rc_my d
assert_grep "source table public.t was dropped and created again" "$WORK/service.log"
kept() { grep -q "sink drc2: source table public.t was dropped and created again (relation [0-9]*, before [0-9]*): its rows would be merged into target table public.t, which holds the old table's rows — empty public.t (TRUNCATE) and give it the new table's columns" "$WORK/service.log"; }
wait_for "no merge without create_tables: a schema error" 60 kept
[ "$(metric 'cdcsync_errors_total{pipeline="rc_keep",kind="schema"}')" -ge 1 ] || fail "rc_keep: no schema error counted"
rc2_old || fail "rc_keep changed its target before being told"
psql_db dst rc2 -c "DROP TABLE t; CREATE TABLE t (id text PRIMARY KEY, v numeric(10,2), d date)"
rc2_new() { [ "$(psql_db dst rc2 -c "SELECT string_agg(t::text, ' ' ORDER BY id) FROM t")" = "(a,1.50,2020-01-01) (b,2.25,)" ]; }
wait_for "rc_keep goes on into the emptied table" 60 rc2_new
psql_db src rc -c "INSERT INTO t VALUES ('c', 3, '2021-02-03'); UPDATE t SET v = 0 WHERE id = 'a'"
wait_for "t streams on (PostgreSQL)" 60 pg_equal rc t
wait_for "t streams on (MariaDB)" 60 rc_my d
log "a table dropped and created again: re-created on both sinks, or a schema error until its target is emptied; never merged"

# ---- replication origins of pipelines no longer in the conf ----
service_stop
# While the service is down a table is created, written and dropped: its Relation message is
# decoded after the drop, when the catalogue no longer has the table; the types are named from
# the message's type and modifier, not guessed (numeric(10,2), not numeric / DECIMAL(65,30)).
psql_db src rc <<'SQL'
CREATE TABLE gone (id int PRIMARY KEY, v numeric(10,2), w varchar(5));
INSERT INTO gone VALUES (1, 1.5, 'ab');
DROP TABLE gone;
SQL
nslots=$(psql_on dst -c "SELECT count(*) FROM pg_replication_origin_status")
psql_on dst -c "ALTER SYSTEM SET max_replication_slots = $nslots"
bash "$SRCDIR/scripts/pg.sh" restart "$PG_dst_DIR"
psql_on dst -c "CREATE DATABASE fresh"
# pipeline kinds removed, a new pipeline added: every origin slot is held
sed -i '/^\[pipeline.kinds\]$/,/^$/d' "$WORK/cdcsync.conf"
cat >>"$WORK/cdcsync.conf" <<CONF

[connector.dfresh]
type = postgres
dsn = $(dsn dst fresh)
create_tables = yes

[pipeline.fresh]
source = src_rc
sink = dfresh
tables = *
CONF
"$CDCSYNC" -c "$WORK/cdcsync.conf" check --connect >"$WORK/check.out" 2>&1 || true
assert_grep "replication origins of pipelines that are not in this conf: cdcsync_kinds — each holds an origin slot (max_replication_slots)" "$WORK/check.out"
assert_grep "SELECT pg_replication_origin_drop('cdcsync_kinds'); DELETE FROM cdcsync.checkpoints WHERE pipeline = 'kinds';" "$WORK/check.out"
[ "$(grep -c "replication origins of pipelines that are not in this conf" "$WORK/check.out")" = 1 ] ||
  fail "the stale origins should be named once per server"
service_start
no_slot() { grep -q "could not find free replication state slot .* — replication origins of pipelines that are not in this conf hold origin slots: cdcsync_kinds; .* SELECT pg_replication_origin_drop('cdcsync_kinds'); DELETE FROM cdcsync.checkpoints WHERE pipeline = 'kinds';" "$WORK/service.log"; }
wait_for "the new pipeline names the stale origin" 60 no_slot
psql_db dst kinds -c "SELECT pg_replication_origin_drop('cdcsync_kinds'); DELETE FROM cdcsync.checkpoints WHERE pipeline = 'kinds';"
fresh_copied() { [ "$(psql_db dst fresh -c "SELECT string_agg(t::text, ' ' ORDER BY id) FROM t" 2>/dev/null)" = "(a,0.00,2020-01-01) (b,2.25,) (c,3.00,2021-02-03)" ]; }
wait_for "the new pipeline runs once the stale origin is dropped" 60 fresh_copied
gone_pg() { [ "$(psql_db dst rc -c "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'gone'::regclass AND attnum > 0 ORDER BY attnum" 2>/dev/null | paste -sd,)" = "integer,numeric(10,2),character varying(5)" ] &&
  [ "$(psql_db dst rc -c "SELECT gone::text FROM gone")" = "(1,1.50,ab)" ]; }
wait_for "a table dropped before its changes were read: created with its declared types (PostgreSQL)" 60 gone_pg
gone_my() {
  local got
  got=$(my_on my -e "SELECT CONCAT(GROUP_CONCAT(COLUMN_TYPE ORDER BY ORDINAL_POSITION), '|', (SELECT CONCAT_WS(',', id, v, w) FROM test.gone)) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'test' AND TABLE_NAME = 'gone'" 2>&1)
  [ "$got" = "int(11),decimal(10,2),longtext|1,1.50,ab" ] || { echo "$got"; return 1; }
}
wait_for "a table dropped before its changes were read: created with its declared types (MariaDB)" 60 gone_my
log "stale origins named, with the SQL that drops them, by the error and by check --connect"
service_stop
finish
