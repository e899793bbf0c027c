#!/usr/bin/env bash
# Row filters (`where`) through the service, over the initial copy and the stream, into one
# PostgreSQL sink from two sources:
# - m2p: MariaDB → PostgreSQL (whole row images): where test.orders: region IN ('eu', 'uk') AND
#   amount >= 10; test.items: qty > 0 — updates moving rows into the filter arrive as inserts,
#   out of it as deletes, a key change inside it as an update; NULL regions never match.
# - p2p: PostgreSQL → PostgreSQL (default replica identity: the old row is only its key), mapped to
#   schema pgf: where public.orders: region = 'eu' OR region IS NULL — the new row decides.
# At every step the sink holds exactly the source's matching rows; filtered-out rows never reach
# it. A condition naming a missing column stops the pipeline with the name, and `check` names the
# line of one it cannot read; the PostgreSQL 15 publication filters a condition on key columns
# itself (pgf.tenants), moving rows across it, and a changed condition reaches it at the next
# start; `check --connect` names a column that where, columns,
# exclude_columns or mask_columns gives and the MariaDB table lacks, and a key column left out.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/mylib.sh"

my_start src 1
pg_start psrc
pg_start dst
MPORT=$(free_port)

my_on src -e "CREATE TABLE orders (id int PRIMARY KEY, region varchar(8), amount decimal(10,2), note text);
  CREATE TABLE items (id int PRIMARY KEY, qty int);
  INSERT INTO orders SELECT seq, ELT(1 + seq % 4, 'eu', 'us', 'uk', NULL), seq, CONCAT('n', seq) FROM seq_1_to_40;
  INSERT INTO items SELECT seq, CAST(seq % 3 AS SIGNED) - 1 FROM seq_1_to_30;"
psql_on psrc -c "CREATE TABLE orders (id int PRIMARY KEY, region text, amount numeric(10,2), note text);
  INSERT INTO orders SELECT g, (ARRAY['eu', 'us', 'uk', NULL])[1 + g % 4], g, 'n' || g FROM generate_series(1, 40) g;
  CREATE TABLE tenants (tenant int, id int, v text, PRIMARY KEY (tenant, id));
  INSERT INTO tenants SELECT t, i, 'v' || t || '.' || i FROM generate_series(1, 4) t, generate_series(1, 6) i;"
psql_on dst -c "CREATE SCHEMA pgf"

write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" info <<CONF
[connector.msrc]
$(my_connector src 9001)

[connector.psrc]
type = postgres
dsn = $(pg_dsn psrc)

[connector.dst]
type = postgres
dsn = $(pg_dsn dst)
create_tables = yes

[pipeline.m2p]
source = msrc
sink = dst
tables = test.orders, test.items
map = test.* -> public.*
where = test.orders: region IN ('eu', 'uk') AND amount >= 10; test.items: qty > 0

[pipeline.p2p]
source = psrc
sink = dst
tables = public.orders, public.tenants
map = public.* -> pgf.*
where = public.orders: region = 'eu' OR region IS NULL; public.tenants: tenant IN (1, 3) AND id > 2
CONF
"$CDCSYNC" -c "$WORK/cdcsync.conf" check >"$WORK/check.out" 2>&1 || { cat "$WORK/check.out"; fail "check"; }
"$CDCSYNC" -c "$WORK/cdcsync.conf" check --connect >"$WORK/check.out" 2>&1 ||
  { cat "$WORK/check.out"; fail "check --connect refused a conf whose columns all exist"; }

# check --connect names a column the MariaDB source table lacks (or spells otherwise), and a key
# column left out, before any change does: conf_variant SED EXPECTED
conf_variant() {
  sed "$1" "$WORK/cdcsync.conf" >"$WORK/variant.conf"
  if "$CDCSYNC" -c "$WORK/variant.conf" check --connect >"$WORK/check.out" 2>&1; then
    fail "check --connect accepted: $1"
  fi
  grep -qF "$2" "$WORK/check.out" || { cat "$WORK/check.out"; fail "check --connect did not say: $2"; }
}
conf_variant "s/AND amount >= 10;/AND amont >= 10;/" "where on test.orders: column amont is not in test.orders"
conf_variant "/^tables = test.orders, test.items$/a exclude_columns = test.orders: id" \
  "exclude_columns leaves out id of test.orders, a primary key column"
conf_variant "/^tables = test.orders, test.items$/a columns = test.items: id, QTY" \
  "columns names column QTY of test.items, which the source table spells qty"
conf_variant "/^tables = test.orders, test.items$/a mask_columns = test.orders.note2: redact" \
  "mask_columns names column note2 of test.orders, which the source table does not have"

# the sink holds exactly the source's rows matching the condition
m2p_equal() {
  my_on src -e "SELECT id, region, amount, note FROM orders WHERE region IN ('eu', 'uk') AND amount >= 10
      ORDER BY id" >"$WORK/want.m" &&
    psql_on dst -F $'\t' -c "SELECT id, region, amount, note FROM public.orders ORDER BY id" >"$WORK/got.m" &&
    diff -q "$WORK/want.m" "$WORK/got.m" >/dev/null &&
    my_on src -e "SELECT id, qty FROM items WHERE qty > 0 ORDER BY id" >"$WORK/want.i" &&
    psql_on dst -F $'\t' -c "SELECT id, qty FROM public.items ORDER BY id" >"$WORK/got.i" &&
    diff -q "$WORK/want.i" "$WORK/got.i" >/dev/null
}
p2p_equal() {
  psql_on psrc -F $'\t' -c "SELECT id, region, amount, note FROM orders WHERE region = 'eu' OR region IS NULL
      ORDER BY id" >"$WORK/want.p" &&
    psql_on dst -F $'\t' -c "SELECT id, region, amount, note FROM pgf.orders ORDER BY id" >"$WORK/got.p" &&
    diff -q "$WORK/want.p" "$WORK/got.p" >/dev/null &&
    psql_on psrc -F $'\t' -c "SELECT * FROM tenants WHERE tenant IN (1, 3) AND id > 2 ORDER BY 1, 2" >"$WORK/want.t" &&
    psql_on dst -F $'\t' -c "SELECT * FROM pgf.tenants ORDER BY 1, 2" >"$WORK/got.t" &&
    diff -q "$WORK/want.t" "$WORK/got.t" >/dev/null
}
# what the publication filters itself (PostgreSQL 15 row filters): tenants' condition reads only
# key columns, so the rows it leaves out never leave the source; orders' reads region, which is
# not in the replica identity: a publication filter on it would make PostgreSQL refuse the
# source's own updates, so cdcsync alone filters it
pub_filter() {
  psql_on psrc -c "SELECT coalesce(rowfilter, '-') FROM pg_publication_tables WHERE pubname = 'cdcsync_p2p' AND
    tablename = '$1'"
}

service_start
wait_for "m2p's filtered copy" 60 m2p_equal
wait_for "p2p's filtered copy" 60 p2p_equal
[ "$(psql_on dst -c "SELECT count(*) FROM public.orders")" -gt 0 ] || fail "m2p copied no row at all"
[ "$(pub_filter tenants)" = "((tenant = ANY (ARRAY[1, 3])) AND (id > 2))" ] ||
  fail "the publication does not filter tenants by its key: $(pub_filter tenants)"
[ "$(pub_filter orders)" = "-" ] || fail "the publication filters orders on a column outside its key: $(pub_filter orders)"
psql_on psrc -c "UPDATE orders SET note = 'updated by the application' WHERE id = 1" ||
  fail "the source refused an update of a filtered table"

# the stream: rows entering, leaving, staying in and staying out of the filter
my_on src -e "BEGIN;
  INSERT INTO orders VALUES (101, 'eu', 50, 'in'), (102, 'us', 50, 'out'), (103, 'uk', 5, 'too small');
  UPDATE orders SET region = 'eu' WHERE id = 13;            -- us → eu: enters
  UPDATE orders SET amount = 1 WHERE id = 12;               -- eu, below 10: leaves
  UPDATE orders SET region = NULL WHERE id = 14;            -- uk → NULL: leaves
  UPDATE orders SET note = 'still in' WHERE id = 16;        -- eu: stays
  UPDATE orders SET note = 'still out' WHERE id = 17;       -- us: stays out
  UPDATE orders SET id = 216, note = 'rekeyed' WHERE id = 20; -- eu, key changes inside the filter
  UPDATE orders SET id = 213, region = 'us' WHERE id = 24;    -- eu, key changes and it leaves
  DELETE FROM orders WHERE id IN (28, 29);                 -- one in, one out
  UPDATE items SET qty = 5 WHERE qty <= 0 AND id < 10;      -- enter
  UPDATE items SET qty = 0 WHERE id BETWEEN 20 AND 30;      -- leave (or stay out)
  COMMIT;"
psql_on psrc -c "BEGIN;
  INSERT INTO orders VALUES (101, 'eu', 50, 'in'), (102, 'us', 50, 'out'), (103, NULL, 5, 'null region');
  UPDATE orders SET region = 'eu' WHERE id = 13;
  UPDATE orders SET region = 'us' WHERE id = 12;
  UPDATE orders SET note = 'still in' WHERE id = 16;
  UPDATE orders SET note = 'still out' WHERE id = 17;
  UPDATE orders SET region = 'uk' WHERE id = 15;
  DELETE FROM orders WHERE id IN (28, 29);
  UPDATE tenants SET tenant = 2, id = 13 WHERE tenant = 1 AND id = 3;   -- leaves: the publication sends a delete
  UPDATE tenants SET tenant = 3, id = 14, v = 'moved in' WHERE tenant = 2 AND id = 4; -- enters: an insert
  UPDATE tenants SET v = 'still in' WHERE tenant = 3 AND id = 5;
  UPDATE tenants SET v = 'still out' WHERE tenant = 4;
  INSERT INTO tenants VALUES (1, 100, 'new in'), (2, 100, 'new out');
  DELETE FROM tenants WHERE tenant = 1 AND id = 6;
  COMMIT;
  UPDATE orders SET region = 'eu' WHERE id = 12;"
wait_for "m2p's filtered stream" 60 m2p_equal
wait_for "p2p's filtered stream" 60 p2p_equal
[ "$(psql_on dst -c "SELECT count(*) FROM public.orders WHERE region IS NULL OR region NOT IN ('eu', 'uk')
    OR amount < 10")" = 0 ] || fail "a filtered-out row reached the sink"
[ "$(psql_on dst -c "SELECT count(*) FROM public.orders WHERE id IN (101, 13, 216)")" = 3 ] ||
  fail "rows entering the filter are missing"
log "filtered: $(psql_on dst -c "SELECT count(*) FROM public.orders") of $(my_on src -e \
  "SELECT count(*) FROM orders") MariaDB rows, $(psql_on dst -c "SELECT count(*) FROM pgf.orders") of $(psql_on psrc \
  -c "SELECT count(*) FROM orders") PostgreSQL rows"
service_stop

# a changed condition reaches the publication at the next start (in one transaction with the
# table's membership, so no change of it is sent unfiltered)
sed -i "s/public.tenants: tenant IN (1, 3) AND id > 2$/public.tenants: tenant = 2/" "$WORK/cdcsync.conf"
service_start
wait_for "the publication's new filter" 60 grep -q \
  'publication "cdcsync_p2p" now sends the rows of public.tenants where (tenant = 2) (it sent where' "$WORK/service.log"
[ "$(pub_filter tenants)" = "(tenant = 2)" ] || fail "the publication's filter did not change: $(pub_filter tenants)"
service_stop
sed -i "s/; public.tenants: tenant = 2$//" "$WORK/cdcsync.conf"

# a column the table does not have: the pipeline stops and names it
sed -i "s/^where = public.orders: region = 'eu' OR region IS NULL$/where = public.orders: regoin = 'eu'/" \
  "$WORK/cdcsync.conf"
# check --connect names it before any change does
if "$CDCSYNC" -c "$WORK/cdcsync.conf" check --connect >"$WORK/check.out" 2>&1; then
  fail "check --connect accepted the misspelt column"
fi
grep -q "where on public.orders: column regoin is not in public.orders" "$WORK/check.out" ||
  { cat "$WORK/check.out"; fail "check --connect did not name the misspelt column"; }
psql_on psrc -c "UPDATE orders SET note = 'x' WHERE id = 1"
service_start
wait_for "the misspelt column named" 60 grep -q "where on public.orders: column regoin is not in public.orders" \
  "$WORK/service.log"
service_stop
# a condition outside the subset: check names its line and where it stopped
sed -i "s/^where = public.orders: regoin = 'eu'$/where = public.orders: lower(region) = 'eu'/" "$WORK/cdcsync.conf"
if "$CDCSYNC" -c "$WORK/cdcsync.conf" check >"$WORK/check.out" 2>&1; then fail "check accepted lower(region)"; fi
grep -q "cdcsync.conf:[0-9]*: where: the condition of public.orders cannot be read: at character 6 ('(')" \
  "$WORK/check.out" || { cat "$WORK/check.out"; fail "check did not name the bad condition"; }
echo "ok"
