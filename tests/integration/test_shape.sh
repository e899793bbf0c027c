#!/usr/bin/env bash
# What flows (columns, exclude_columns, mask_columns, skip, soft_delete), PostgreSQL → PostgreSQL
# and PostgreSQL → MariaDB from one source, through the service, over the initial copy and the
# stream:
# - shaped (PG sink, create_tables): users keeps id, email (sha256) and ssn (redacted: NULL);
#   password_hash never reaches the sink; logs (no key) loses its secret column; deletes only
#   mark rows (soft_delete = deleted_at, in both tables), and a key inserted again clears the mark.
# - archive (MariaDB sink, create_tables): users with its key masked (sha256 of the id: the
#   masked key still finds its row for updates), deletes skipped (skip = delete), a key
#   inserted again replaces the archived row.
# A misspelt column stops the pipeline with an error naming it, and a bad value fails `check`
# with its line.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/mylib.sh"

pg_start src
pg_start dst
my_start arch 1
MPORT=$(free_port)
psql_on src -c "CREATE TABLE users (id int PRIMARY KEY, email text, password_hash text, ssn text);
  CREATE TABLE logs (n int, msg text, secret text); ALTER TABLE logs REPLICA IDENTITY FULL;
  CREATE TABLE gone (id int, email text);
  INSERT INTO users SELECT g, 'user' || g || '@example.com', 'hash' || g, 'ssn' || g FROM generate_series(1, 20) g;
  INSERT INTO logs SELECT g, 'log ' || g, 'secret ' || g FROM generate_series(1, 5) g;"

write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" info <<CONF
[connector.src]
type = postgres
dsn = $(pg_dsn src)

[connector.dst]
type = postgres
dsn = $(pg_dsn dst)
create_tables = yes

[connector.arch]
$(my_connector arch 0)
create_tables = yes

[pipeline.shaped]
source = src
sink = dst
tables = public.users, public.logs
columns = public.users: id, email, ssn
exclude_columns = public.logs: secret
mask_columns = public.users.email: sha256, public.users.ssn: redact
soft_delete = deleted_at

[pipeline.archive]
source = src
sink = arch
tables = public.users
map = public.* -> test.*
mask_columns = public.users.id: sha256
skip = delete
CONF
sed -i '/^server_id = 0$/d' "$WORK/cdcsync.conf"
"$CDCSYNC" -c "$WORK/cdcsync.conf" check >"$WORK/check.out" 2>&1 || { cat "$WORK/check.out"; fail "check"; }
# check --connect names a masked column the source table lacks
sed 's/^mask_columns = public.users.id: sha256$/mask_columns = public.users.idd: sha256/' "$WORK/cdcsync.conf" \
  >"$WORK/variant.conf"
if "$CDCSYNC" -c "$WORK/variant.conf" check --connect >"$WORK/check.out" 2>&1; then
  fail "check --connect accepted the misspelt masked column"
fi
grep -q "mask_columns names column idd of public.users, which the source table does not have" "$WORK/check.out" ||
  { cat "$WORK/check.out"; fail "check --connect did not name the misspelt masked column"; }

# the stream: updates, deletes (archived first in gone, which no pipeline syncs), keys back
workload() {
  psql_on src -c "BEGIN; UPDATE users SET email = 'new' || id || '@example.com', password_hash = 'rehash'
      WHERE id % 3 = 0;
    INSERT INTO gone SELECT id, email FROM users WHERE id IN (4, 5, 7);
    DELETE FROM users WHERE id IN (4, 5, 7);
    INSERT INTO users VALUES (21, 'late@example.com', 'h', 's');
    INSERT INTO logs VALUES (6, 'log 6', 'secret 6'); UPDATE logs SET msg = 'log one' WHERE n = 1;
    DELETE FROM logs WHERE n = 2; COMMIT;
    INSERT INTO users VALUES (5, 'back@example.com', 'h', 's');"
}

# shaped: the live rows hashed and redacted, the deleted ones marked; logs without its secret
shaped_equal() {
  psql_on src -c "COPY (SELECT id, encode(sha256(convert_to(email, 'UTF8')), 'hex'), NULL FROM users
      ORDER BY id) TO STDOUT" >"$WORK/want.users" &&
    psql_on dst -c "COPY (SELECT id, email, ssn FROM users WHERE deleted_at IS NULL ORDER BY id) TO STDOUT" \
      >"$WORK/got.users" &&
    diff -q "$WORK/want.users" "$WORK/got.users" >/dev/null &&
    [ "$(psql_on dst -c "SELECT string_agg(id::text, ',' ORDER BY id) FROM users WHERE deleted_at IS NOT NULL")" \
      = "$1" ] &&
    psql_on src -c "COPY (SELECT n, msg FROM logs ORDER BY n) TO STDOUT" >"$WORK/want.logs" &&
    psql_on dst -c "COPY (SELECT n, msg FROM logs WHERE deleted_at IS NULL ORDER BY n) TO STDOUT" >"$WORK/got.logs" &&
    diff -q "$WORK/want.logs" "$WORK/got.logs" >/dev/null
}
# archive: every row the source ever held, by hashed key, with its last values
archive_equal() {
  psql_on src -c "COPY (SELECT encode(sha256(convert_to(id::text, 'UTF8')), 'hex') AS k, email FROM (
      SELECT id, email FROM users UNION ALL SELECT id, email FROM gone WHERE id NOT IN (SELECT id FROM users)) a
      ORDER BY k) TO STDOUT" >"$WORK/want.arch" &&
    my_on arch -e "SELECT id, email FROM users ORDER BY id" >"$WORK/got.arch" &&
    diff -q "$WORK/want.arch" "$WORK/got.arch" >/dev/null
}

service_start
wait_for "the shaped copy" 60 shaped_equal ""
wait_for "the archive's copy" 60 archive_equal
workload
wait_for "the shaped stream: deletes marked, key 5 back unmarked" 60 shaped_equal "4,7"
wait_for "the archive's stream: deletes skipped, key 5 replaced" 60 archive_equal
[ "$(psql_on dst -c "SELECT count(*) FROM information_schema.columns WHERE table_name IN ('users', 'logs')
    AND column_name IN ('password_hash', 'secret')")" = 0 ] || fail "a left-out column reached the sink"
[ "$(psql_on dst -c "SELECT count(*) FROM users WHERE ssn IS NOT NULL")" = 0 ] || fail "a redacted value reached the sink"
[ "$(my_on arch -e "SELECT count(*) FROM users WHERE id NOT REGEXP '^[0-9a-f]{64}\$'")" = 0 ] ||
  fail "an archived key is not a hash"
psql_on dst -c "SELECT deleted_at > now() - interval '1 hour' FROM users WHERE id = 4" | grep -qx t ||
  fail "the soft-delete mark is not the delete's commit time"
log "shaped and archived: $(psql_on dst -c "SELECT count(*) FROM users") shaped rows, $(my_on arch -e \
  "SELECT count(*) FROM users") archived"
# PostgreSQL 15's column list: the shaped pipeline's publication sends only the kept columns of
# users (password_hash never leaves the source); logs (REPLICA IDENTITY FULL) goes whole
pub=$(psql_on src -c "SELECT pubname FROM pg_publication_tables WHERE tablename = 'logs'")
[ -n "$pub" ] || fail "no publication holds logs"
cols_listed() {
  [ "$(psql_on src -c "SELECT array_to_string(attnames, ',') FROM pg_publication_tables WHERE pubname = '$pub'
      AND tablename = 'users'")" = "id,email,ssn" ] &&
    [ "$(psql_on src -c "SELECT array_to_string(attnames, ',') FROM pg_publication_tables WHERE pubname = '$pub'
      AND tablename = 'logs'")" = "n,msg,secret" ]
}
cols_listed || fail "publication $pub does not send exactly the kept columns: $(psql_on src -c \
  "SELECT tablename, attnames FROM pg_publication_tables WHERE pubname = '$pub'")"
service_stop
# a publication without the list (made by an older cdcsync, or by hand) gets it at the next start
psql_on src -c "ALTER PUBLICATION \"$pub\" SET TABLE public.users, public.logs"
service_start
wait_for "the column list restored" 60 cols_listed
psql_on src -c "UPDATE users SET email = 'after@example.com', password_hash = 'x' WHERE id = 1"
wait_for "the stream after the list came back" 60 shaped_equal "4,7"
service_stop

# a column that does not exist: the pipeline stops with the name, and check names the line
sed -i 's/^columns = public.users: id, email, ssn$/columns = public.users: id, emial, ssn/' "$WORK/cdcsync.conf"
if "$CDCSYNC" -c "$WORK/cdcsync.conf" check --connect >"$WORK/check.out" 2>&1; then
  fail "check --connect accepted the misspelt column"
fi
grep -q "columns names column emial of public.users, which the source table does not have" "$WORK/check.out" ||
  { cat "$WORK/check.out"; fail "check --connect did not name the misspelt column"; }
psql_on src -c "UPDATE users SET email = 'x' WHERE id = 1"
service_start
wait_for "the misspelt column named" 60 grep -q "columns names column emial of public.users, which the source table does not have" "$WORK/service.log"
service_stop
sed -i 's/^skip = delete$/skip = delete, select/' "$WORK/cdcsync.conf"
if "$CDCSYNC" -c "$WORK/cdcsync.conf" check >"$WORK/check.out" 2>&1; then fail "check accepted skip = select"; fi
grep -q "cdcsync.conf:[0-9]*: skip: 'select' is no operation that can be skipped" "$WORK/check.out" ||
  { cat "$WORK/check.out"; fail "check did not name the bad skip"; }
echo "ok"
